"""Pictures of network outputs for inspection (no Qt: plain RGB arrays)."""

from __future__ import annotations

import numpy as np
from skimage.color import hsv2rgb


def vectors_to_rgb(vectors: np.ndarray, *, saturation_percentile: float = 99.0) -> np.ndarray:
    """Colour a 2D vector field: hue is the direction, brightness the length.

    Parameters
    ----------
    vectors : ndarray (2, Y, X)
        (dy, dx) per pixel.
    saturation_percentile : float
        Lengths at or above this percentile are shown at full brightness.

    Returns
    -------
    ndarray (Y, X, 3) float32 in [0, 1]
    """
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 3 or vectors.shape[0] != 2:
        raise ValueError(f"expected a (2, Y, X) vector field, got shape {vectors.shape}")
    dy, dx = vectors
    length = np.hypot(dy, dx)
    top = float(np.percentile(length, saturation_percentile)) if length.size else 0.0
    value = np.clip(length / top, 0, 1) if top > 0 else np.zeros_like(length)
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
    hsv = np.stack([hue, np.ones_like(hue), value], axis=-1)
    return hsv2rgb(hsv).astype(np.float32)
