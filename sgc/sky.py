"""Geometry on the celestial sphere shared by the stages that test where objects and pixels fall."""

from __future__ import annotations

import numpy as np


def unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) of sky positions given in degrees, for chord and cone tests."""
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)
