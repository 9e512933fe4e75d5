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


def embedding_to_rgb(embedding: np.ndarray, *, max_samples: int = 20000) -> np.ndarray:
    """Colour a pixel embedding by its first three principal components.

    Pixels with similar embeddings get similar colours, so objects that the clustering will
    separate show as differently coloured patches.

    Parameters
    ----------
    embedding : ndarray (E, *spatial)
    max_samples : int
        The principal axes are fitted on at most this many random pixels.

    Returns
    -------
    ndarray (*spatial, 3) float32 in [0, 1]
    """
    embedding = np.asarray(embedding, np.float32)
    if embedding.ndim < 2:
        raise ValueError(f"expected an (E, *spatial) embedding, got shape {embedding.shape}")
    spatial = embedding.shape[1:]
    flat = embedding.reshape(embedding.shape[0], -1).T  # (P, E)
    rng = np.random.default_rng(0)
    sample = flat if flat.shape[0] <= max_samples else flat[rng.choice(flat.shape[0], max_samples)]
    mean = sample.mean(axis=0)
    if flat.shape[1] >= 3:
        _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
        proj = (flat - mean) @ vt[:3].T
    else:
        proj = np.pad(flat - mean, ((0, 0), (0, 3 - flat.shape[1])))
    lo, hi = np.percentile(proj, [1, 99], axis=0)
    rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    return rgb.reshape(*spatial, 3).astype(np.float32)
