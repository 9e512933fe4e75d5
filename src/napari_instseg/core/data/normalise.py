"""Intensity normalisation."""

from __future__ import annotations

import numpy as np


def normalise_percentile(
    image: np.ndarray, *, low: float = 1.0, high: float = 99.8, eps: float = 1e-6
) -> np.ndarray:
    """Map the ``low`` and ``high`` percentiles of each channel to 0 and 1 (no clipping).

    Parameters
    ----------
    image : ndarray
        Channel-first image ``(C, *spatial)``.
    low, high : float
        Percentiles mapped to 0 and 1.

    Examples
    --------
    >>> x = np.arange(101, dtype=np.float32)[None]
    >>> y = normalise_percentile(x, low=0, high=100)
    >>> float(y.min()), float(y.max())
    (0.0, 1.0)
    """
    image = np.asarray(image, dtype=np.float32)
    flat = image.reshape(image.shape[0], -1)
    lo, hi = np.percentile(flat, [low, high], axis=1)
    scale = np.maximum(hi - lo, eps)
    shape = (-1,) + (1,) * (image.ndim - 1)
    return ((image - lo.reshape(shape)) / scale.reshape(shape)).astype(np.float32)
