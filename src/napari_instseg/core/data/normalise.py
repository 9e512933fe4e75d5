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
    return normalise_with(image, lo, hi, eps=eps)


def normalise_with(image: np.ndarray, lo, hi, *, eps: float = 1e-6) -> np.ndarray:
    """Map per-channel values ``lo`` and ``hi`` to 0 and 1 (statistics taken elsewhere, e.g.
    once for a whole large image and applied to each of its blocks)."""
    image = np.asarray(image, dtype=np.float32)
    shape = (-1,) + (1,) * (image.ndim - 1)
    lo = np.asarray(lo, np.float32).reshape(shape)
    scale = np.maximum(np.asarray(hi, np.float32).reshape(shape) - lo, eps)
    return ((image - lo) / scale).astype(np.float32, copy=False)
