"""Experiment configs. Run tools from the repository root so `configs` imports."""
