"""Sparse object-level annotation: keep some instances, mark what is known."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..arrays import LABEL_DTYPE


def sparsify_instances(
    labels: np.ndarray,
    fraction: float,
    *,
    rng: np.random.Generator,
    background: str = "none",
    background_radius: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep a random ``fraction`` of the instances and return the pixels whose label is known.

    This simulates a user who annotated a few whole objects: the kept objects are known, the
    other objects and (by default) all background are unknown and must be ignored by losses.

    Parameters
    ----------
    labels : ndarray
        Dense instance labels, 0 = background.
    fraction : float
        Fraction of instances to keep, in (0, 1]; at least one is kept when any exists.
    rng : numpy.random.Generator
        Source of randomness.
    background : {'none', 'all', 'near'}
        Which background pixels count as known: none, all of them (a user who painted all
        background), or those within ``background_radius`` of a kept object (painted strokes
        around the annotated objects).

    Returns
    -------
    sparse_labels : ndarray of uint32
        Kept instances with their ids, 0 elsewhere.
    known : ndarray of bool
        Pixels whose label is known: kept objects plus the chosen background.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if background not in ("none", "all", "near"):
        raise ValueError(f"background must be 'none', 'all' or 'near', not {background!r}")
    ids = np.unique(labels)
    ids = ids[ids != 0]
    n_keep = max(1, int(round(fraction * ids.size))) if ids.size else 0
    kept = rng.choice(ids, size=n_keep, replace=False) if n_keep else ids
    keep_mask = np.isin(labels, kept)
    sparse = np.where(keep_mask, labels, 0).astype(LABEL_DTYPE)
    known = keep_mask.copy()
    if background == "all":
        known |= labels == 0
    elif background == "near" and keep_mask.any():
        near = ndi.binary_dilation(keep_mask, iterations=background_radius)
        known |= near & (labels == 0)
    return sparse, known
