"""Scoring a model: metric definitions (pixel, per-patch and object level)."""
