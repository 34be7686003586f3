"""Alignment of the five bands onto the i-band grid, and the field cube it produces."""
