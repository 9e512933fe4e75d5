"""Seeded watershed and connected components on foreground / interior probability maps.

These back-ends turn the probabilities of a semantic network (background / interior /
boundary) into instances. They are the baseline against which the learned-embedding
methods are compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as label_components
from skimage.segmentation import watershed

from ..arrays import LABEL_DTYPE
from .labels import finish_labels, remove_small_objects


@dataclass(frozen=True)
class WatershedConfig:
    """Knobs of :func:`segment_watershed`."""

    fg_threshold: Annotated[
        float, {"min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "foreground probability cut"}
    ] = 0.5
    seed_threshold: Annotated[
        float, {"min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "interior probability for seeds"}
    ] = 0.6
    min_seed_size: Annotated[
        int, {"min": 0, "max": 1000, "tooltip": "seeds smaller than this (pixels) are dropped"}
    ] = 4
    min_size: Annotated[
        int, {"min": 0, "max": 100000, "tooltip": "objects smaller than this (pixels) are removed"}
    ] = 15


@dataclass(frozen=True)
class ComponentsConfig:
    """Knobs of :func:`segment_components`."""

    threshold: Annotated[
        float, {"min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "interior probability cut"}
    ] = 0.5
    grow: Annotated[int, {"min": 0, "max": 20, "tooltip": "pixels added around each component"}] = 1
    min_size: Annotated[
        int, {"min": 0, "max": 100000, "tooltip": "objects smaller than this (pixels) are removed"}
    ] = 15


def segment_watershed(
    arrays: Mapping[str, np.ndarray],
    config: WatershedConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Flood the foreground from interior seeds along the interior probability.

    Parameters
    ----------
    arrays : mapping
        ``foreground`` and ``interior`` probability maps of the same spatial shape.
    config : WatershedConfig, optional
        The knobs (defaults when omitted): ``fg_threshold``, the foreground probability above
        which a pixel belongs to some object; ``seed_threshold``, the interior probability
        above which a pixel is part of a seed (each connected seed becomes one object);
        ``min_seed_size`` and ``min_size``: seeds and final objects smaller than these
        (pixels) are dropped. Foreground regions that contain no seed become objects of
        their own when large enough.
    mask : ndarray of bool, optional
        Pixels allowed to be foreground.
    rng : numpy.random.Generator, optional
        Unused (the result is deterministic); accepted for the back-end contract.
    """
    config = WatershedConfig() if config is None else config
    foreground = np.asarray(arrays["foreground"]) > config.fg_threshold
    interior = np.asarray(arrays["interior"], dtype=np.float32)
    if mask is not None:
        foreground &= np.asarray(mask, bool)
    seeds = label_components((interior > config.seed_threshold) & foreground, connectivity=1)
    seeds = remove_small_objects(seeds.astype(LABEL_DTYPE), config.min_seed_size)
    labels = watershed(-interior, markers=seeds, mask=foreground).astype(LABEL_DTYPE)
    orphans = label_components(foreground & (labels == 0), connectivity=1)
    if orphans.max():
        labels = np.where(orphans > 0, orphans.astype(LABEL_DTYPE) + labels.max(), labels)
    return finish_labels(labels, config.min_size)


def segment_components(
    arrays: Mapping[str, np.ndarray],
    config: ComponentsConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Connected components of the thresholded interior, grown back by ``grow`` pixels.

    Growing stops at the foreground (when given) and where two objects meet; the knobs are
    those of ``config`` (:class:`ComponentsConfig`, defaults when omitted).
    """
    config = ComponentsConfig() if config is None else config
    grow = config.grow
    interior = np.asarray(arrays["interior"]) > config.threshold
    allowed = None
    if "foreground" in arrays:
        allowed = np.asarray(arrays["foreground"]) > 0.5
    if mask is not None:
        mask = np.asarray(mask, bool)
        interior &= mask
        allowed = mask if allowed is None else allowed & mask
    labels = label_components(interior, connectivity=1).astype(LABEL_DTYPE)
    if grow > 0 and labels.any():
        distance, (indices) = ndi.distance_transform_edt(labels == 0, return_indices=True)
        nearest = labels[tuple(indices)]
        grown = np.where(distance <= grow, nearest, 0)
        if allowed is not None:
            grown = np.where(allowed | (labels > 0), grown, 0)
        labels = grown.astype(LABEL_DTYPE)
    return finish_labels(labels, config.min_size)
