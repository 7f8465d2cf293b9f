"""vivit-jax: ViViT (Video Vision Transformer) in JAX/Flax, Scenic-compatible."""

__version__ = '0.1.0'
