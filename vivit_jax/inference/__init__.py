"""Inference on video files: checkpoint loading, the multi-view classifier, attention rollout."""

from vivit_jax.inference.checkpoint import load_params
from vivit_jax.inference.classifier import Prediction, VideoClassifier

__all__ = ['Prediction', 'VideoClassifier', 'load_params']
