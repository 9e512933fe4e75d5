"""Instances by clustering pixel embeddings: mean-shift, HDBSCAN and consistency clustering.

The back-ends read ``pixel_embedding`` (E, *spatial): a learnt embedding in which pixels of
one object gather together (SPOCO and any method with such an output). When a ``foreground``
probability is given, only pixels above ``fg_threshold`` are clustered; otherwise every pixel
in the mask is. Clusters become objects, each spatially connected piece of a cluster its own
object unless ``split_disconnected`` is off; with ``merge_distance`` > 0, touching objects whose
mean embeddings are closer than it are joined (single linkage), which puts back the fragments
that a diffuse embedding splits off an object; objects under ``min_size`` pixels are dropped.

- ``meanshift``: :func:`..meanshift.mean_shift` with the bandwidth ``delta_var`` the network
  was trained with (flat or Gaussian kernel).
- ``hdbscan``: the hdbscan package on a random subsample of the foreground pixels; every other
  pixel takes the cluster of its nearest subsampled pixel (a k-d tree query; noise stays
  background).
- ``consistency``: SPOCO's consistency clustering: mean-shift on f's embedding, then each
  connected piece of a cluster is checked against g's embedding of a perturbed view
  (``pixel_embedding_g``): for random anchor pixels of the piece, g grows a region of the
  connected pixels within ``bandwidth`` of the anchor; a piece whose median IoU with those
  regions is below ``iou_threshold`` is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from skimage.measure import label as label_regions

from ..arrays import LABEL_DTYPE, adjacent_pairs, relabel_consecutive
from .labels import remove_small_objects
from .meanshift import mean_shift

_FG = {"min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "foreground probability threshold"}
_BANDWIDTH = {
    "min": 0.05,
    "max": 4.0,
    "step": 0.05,
    "tooltip": "embedding distance that joins pixels (the training delta_var)",
}
_MIN_SIZE = {"min": 0, "max": 100000, "tooltip": "objects smaller than this (pixels) are dropped"}
_SPLIT = {"tooltip": "a cluster's spatially disconnected pieces become separate objects"}
_MERGE = {
    "min": 0.0,
    "max": 8.0,
    "step": 0.05,
    "tooltip": "touching objects whose mean embeddings are closer than this are joined (0: off)",
}


@dataclass(frozen=True)
class MeanShiftConfig:
    """Knobs of :func:`cluster_meanshift`."""

    bandwidth: Annotated[float, _BANDWIDTH] = 0.5
    fg_threshold: Annotated[float, _FG] = 0.5
    min_size: Annotated[int, _MIN_SIZE] = 10
    split_disconnected: Annotated[bool, _SPLIT] = True
    gaussian: Annotated[
        bool, {"tooltip": "Gaussian kernel (sigma = bandwidth) instead of the flat one"}
    ] = False
    merge_distance: Annotated[float, _MERGE] = 0.0


@dataclass(frozen=True)
class HdbscanConfig:
    """Knobs of :func:`cluster_hdbscan`."""

    min_cluster_size: Annotated[
        int, {"min": 2, "max": 100000, "tooltip": "smallest cluster (pixels of the full image)"}
    ] = 30
    min_samples: Annotated[
        int, {"min": 0, "max": 1000, "tooltip": "density smoothing; 0 = min_cluster_size"}
    ] = 0
    epsilon: Annotated[
        float,
        {"min": 0.0, "max": 4.0, "step": 0.05, "tooltip": "clusters closer than this merge"},
    ] = 0.5
    fg_threshold: Annotated[float, _FG] = 0.5
    min_size: Annotated[int, _MIN_SIZE] = 10
    split_disconnected: Annotated[bool, _SPLIT] = True
    max_points: Annotated[
        int, {"min": 500, "max": 200000, "tooltip": "pixels given to HDBSCAN (subsample)"}
    ] = 4000
    merge_distance: Annotated[float, _MERGE] = 0.0


@dataclass(frozen=True)
class ConsistencyConfig:
    """Knobs of :func:`cluster_consistency`."""

    bandwidth: Annotated[float, _BANDWIDTH] = 0.5
    iou_threshold: Annotated[
        float,
        {
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "clusters whose median IoU with the other view is lower are dropped",
        },
    ] = 0.6
    num_anchors: Annotated[
        int, {"min": 1, "max": 1000, "tooltip": "anchor pixels checked per object"}
    ] = 20
    fg_threshold: Annotated[float, _FG] = 0.5
    min_size: Annotated[int, _MIN_SIZE] = 10
    split_disconnected: Annotated[bool, _SPLIT] = True
    merge_distance: Annotated[float, _MERGE] = 0.0


def _selected(arrays: Mapping[str, np.ndarray], mask, fg_threshold: float):
    """The embedding and the mask of pixels to cluster (foreground, within ``mask``)."""
    emb = np.asarray(arrays["pixel_embedding"], np.float32)
    if emb.ndim < 2:
        raise ValueError(f"pixel_embedding must be (E, *spatial), got shape {emb.shape}")
    if not np.isfinite(emb).all():
        raise ValueError("pixel_embedding has NaN or infinite values")
    spatial = emb.shape[1:]
    keep = np.ones(spatial, bool)
    if "foreground" in arrays:
        fg = np.asarray(arrays["foreground"])
        if fg.shape != spatial:
            raise ValueError(f"foreground shape {fg.shape} != embedding shape {spatial}")
        keep &= fg > fg_threshold
    if mask is not None:
        keep &= np.asarray(mask, bool)
    return emb, keep


def merge_touching(labels: np.ndarray, emb: np.ndarray, distance: float) -> np.ndarray:
    """Join touching objects (face neighbours) whose mean embeddings are closer than
    ``distance``, transitively (single linkage on the objects' adjacency graph).

    Mean-shift on a diffuse embedding can leave several modes inside one object; their pieces
    touch and their means stay close, unlike those of two touching objects.

    Examples
    --------
    >>> lab = np.array([[1, 1, 2, 3]])
    >>> emb = np.array([[[0.0, 0.0, 0.5, 5.0]]])
    >>> merge_touching(lab, emb, 1.0)
    array([[1, 1, 1, 2]], dtype=uint32)
    """
    from scipy.sparse import coo_matrix, csr_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(labels.max())
    if n < 2 or distance <= 0:
        return labels
    flat = labels.ravel()
    inside = np.flatnonzero(flat)
    ids = flat[inside].astype(np.int64)
    # per-object sums as one sparse product: (E, pixels) @ (pixels, objects)
    member = csr_matrix(
        (np.ones(ids.size, np.float32), (np.arange(ids.size), ids - 1)), shape=(ids.size, n)
    )
    sums = (member.T @ emb.reshape(emb.shape[0], -1)[:, inside].T).T  # (E, n)
    means = sums / np.maximum(np.bincount(ids - 1, minlength=n), 1)
    first, second, _ = adjacent_pairs(labels)
    if not first.size:
        return labels
    d = np.linalg.norm(means[:, first - 1] - means[:, second - 1], axis=0)
    close = d < distance
    graph = coo_matrix(
        (np.ones(int(close.sum())), (first[close], second[close])), shape=(n + 1, n + 1)
    )
    _, component = connected_components(graph, directed=False)
    lut = (component + 1).astype(LABEL_DTYPE)
    lut[0] = 0
    return relabel_consecutive(lut[labels])


def _to_labels(keep: np.ndarray, cluster: np.ndarray, emb: np.ndarray, config) -> np.ndarray:
    """Cluster indices (0..M-1, -1 = none) of the kept pixels to a label image; with
    ``config.split_disconnected`` each spatially connected piece of a cluster (face
    neighbours) becomes its own object; with ``config.merge_distance`` touching objects with
    close mean embeddings are then joined (:func:`merge_touching`) before objects under
    ``config.min_size`` pixels are dropped.

    Clustering sees embeddings only, so two far-apart objects that the network happened to
    embed alike would otherwise share one id.
    """
    labels = np.zeros(keep.shape, LABEL_DTYPE)
    labels[keep] = (cluster + 1).astype(LABEL_DTYPE)
    if config.split_disconnected and labels.any():
        labels = label_regions(labels, background=0, connectivity=1).astype(LABEL_DTYPE)
    if config.merge_distance > 0:
        labels = merge_touching(labels, emb, config.merge_distance)
    return relabel_consecutive(remove_small_objects(labels, config.min_size))


def cluster_meanshift(
    arrays: Mapping[str, np.ndarray],
    config: MeanShiftConfig | None = None,
    *,
    mask=None,
    rng=None,
) -> np.ndarray:
    """Mean-shift clusters of the foreground pixels' embeddings as instances; the knobs are
    those of ``config`` (:class:`MeanShiftConfig`, defaults when omitted)."""
    config = MeanShiftConfig() if config is None else config
    emb, keep = _selected(arrays, mask, config.fg_threshold)
    if not keep.any():
        return np.zeros(keep.shape, LABEL_DTYPE)
    cluster, _ = mean_shift(
        emb[:, keep].T,
        config.bandwidth,
        kernel="gaussian" if config.gaussian else "flat",
        rng=np.random.default_rng(0) if rng is None else rng,
    )
    return _to_labels(keep, cluster, emb, config)


def cluster_hdbscan(
    arrays: Mapping[str, np.ndarray],
    config: HdbscanConfig | None = None,
    *,
    mask=None,
    rng=None,
) -> np.ndarray:
    """HDBSCAN clusters of a subsample of the foreground embeddings, spread to all pixels.

    The knobs are those of ``config`` (:class:`HdbscanConfig`, defaults when omitted);
    ``min_cluster_size`` and ``min_samples`` are in pixels of the full image and are scaled
    by the subsampling rate before they reach HDBSCAN.
    """
    import hdbscan

    config = HdbscanConfig() if config is None else config
    max_points = config.max_points
    emb, keep = _selected(arrays, mask, config.fg_threshold)
    points = np.ascontiguousarray(emb[:, keep].T)
    n = points.shape[0]
    if n == 0:
        return np.zeros(keep.shape, LABEL_DTYPE)
    rng = np.random.default_rng(0) if rng is None else rng
    rate = 1.0
    sample = points
    if n > max_points:
        pick = np.sort(rng.choice(n, size=max_points, replace=False))
        sample, rate = points[pick], max_points / n
    mcs = max(2, int(round(config.min_cluster_size * rate)))
    ms = max(1, int(round((config.min_samples or config.min_cluster_size) * rate)))
    if sample.shape[0] <= mcs:  # too few pixels for any cluster of that size
        return np.zeros(keep.shape, LABEL_DTYPE)
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=mcs,
        min_samples=ms,
        cluster_selection_epsilon=float(config.epsilon),
        core_dist_n_jobs=1,
    )
    sample_labels = clusterer.fit_predict(sample.astype(np.float64))
    if sample is points:
        cluster = sample_labels
    else:  # a k-d tree of the sample: ~8x faster here than a dense (pixels x sample) argmin
        from scipy.spatial import cKDTree

        _, idx = cKDTree(sample).query(points, k=1, workers=max(1, torch.get_num_threads()))
        cluster = sample_labels[idx]
    return _to_labels(keep, cluster, emb, config)


#: Anchors x window pixels per object in :func:`object_agreement` (bounds the work of a
#: large object).
ANCHOR_BUDGET = 50_000


def object_agreement(
    labels: np.ndarray,
    emb_g: np.ndarray,
    keep: np.ndarray,
    radius: float,
    num_anchors: int,
    rng: np.random.Generator,
    *,
    min_size: int,
) -> np.ndarray:
    """Median over anchor pixels of each object's IoU with the region g grows around them.

    For an anchor pixel of object ``i``, g's region is the spatially connected set of kept
    pixels (face neighbours) that holds the anchor and whose g-embedding lies within
    ``radius`` of the anchor's, looked for in a window around the object (its bounding box
    grown by half its extent on every side). Returns an array indexed by id (entry 0 unused):
    1.0 means that g delineates the object exactly from any of its pixels. Objects under
    ``min_size`` pixels are not checked (1.0); large windows get fewer anchors (at least 8),
    so that anchors times window pixels stays within ``ANCHOR_BUDGET``.

    Examples
    --------
    >>> lab = np.array([[1, 1, 1, 1, 0, 2, 2]], np.uint32)
    >>> g = np.array([[[0.0, 0.0, 3.0, 3.0, 9.0, 5.0, 5.0]]])  # g splits object 1 in two
    >>> object_agreement(lab, g, lab > 0, 0.5, 4, np.random.default_rng(0), min_size=0)[1:]
    array([0.5, 1. ])
    """
    from scipy import ndimage as ndi

    median = np.ones(int(labels.max()) + 1)
    structure = np.zeros((3,) * (labels.ndim + 1), bool)
    structure[1] = ndi.generate_binary_structure(labels.ndim, 1)  # anchors stay apart
    emb_g = np.asarray(emb_g, np.float32)
    r2 = float(radius) ** 2
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        win = tuple(
            slice(
                max(0, b.start - (b.stop - b.start) // 2 - 1),
                min(n, b.stop + (b.stop - b.start) // 2 + 1),
            )
            for b, n in zip(box, labels.shape, strict=True)
        )
        obj = (labels[win] == i).ravel()
        members = np.flatnonzero(obj)
        if members.size < min_size:
            continue
        k = min(num_anchors, members.size, max(8, ANCHOR_BUDGET // obj.size))
        pick = rng.choice(members, size=k, replace=False)
        g = emb_g[(slice(None), *win)].reshape(emb_g.shape[0], -1)
        a = g[:, pick]
        d2 = (g * g).sum(0)[None, :] - 2.0 * (a.T @ g) + (a * a).sum(0)[:, None]
        near = (d2 <= r2) & keep[win].ravel()[None, :]
        near[np.arange(k), pick] = True
        grown, _ = ndi.label(near.reshape(k, *labels[win].shape), structure)
        grown = grown.reshape(k, -1)
        region = grown == grown[np.arange(k), pick][:, None]
        inter = (region & obj[None, :]).sum(1)
        median[i] = float(np.median(inter / (region.sum(1) + members.size - inter)))
    return median


def cluster_consistency(
    arrays: Mapping[str, np.ndarray],
    config: ConsistencyConfig | None = None,
    *,
    mask=None,
    rng=None,
) -> np.ndarray:
    """Mean-shift on f's embedding; pieces that g's embedding does not reproduce are dropped.

    The knobs are those of ``config`` (:class:`ConsistencyConfig`, defaults when omitted).
    Each spatially connected piece of a mean-shift cluster is checked against g (the
    embedding of a perturbed view, ``pixel_embedding_g``) with :func:`object_agreement`,
    ``bandwidth`` as the radius: a piece whose median IoU is below ``iou_threshold`` is
    dropped. Pieces under ``min_size`` pixels are not checked: they are either joined to a
    neighbour by ``merge_distance`` or dropped. The kept pieces then go through the same
    steps as mean-shift's (``split_disconnected``, ``merge_distance``, ``min_size``).

    Unlike SPOCO's reference, which compares a cluster with the pixels of the whole image
    within ``bandwidth`` of an anchor, the check is local: an embedding that gives distant
    objects alike embeddings (as ours do; the loss only separates objects that share a
    crop) would otherwise fail every cluster, even against g = f.
    """
    config = ConsistencyConfig() if config is None else config
    emb, keep = _selected(arrays, mask, config.fg_threshold)
    if not keep.any():
        return np.zeros(keep.shape, LABEL_DTYPE)
    emb_g = np.asarray(arrays["pixel_embedding_g"], np.float32)
    if emb_g.shape[1:] != emb.shape[1:]:
        raise ValueError(f"pixel_embedding_g shape {emb_g.shape} != {emb.shape}")
    rng = np.random.default_rng(0) if rng is None else rng
    cluster, _ = mean_shift(emb[:, keep].T, config.bandwidth, rng=rng)
    labels = np.zeros(keep.shape, LABEL_DTYPE)
    labels[keep] = (cluster + 1).astype(LABEL_DTYPE)
    pieces = label_regions(labels, background=0, connectivity=1).astype(LABEL_DTYPE)
    agree = object_agreement(
        pieces, emb_g, keep, config.bandwidth, config.num_anchors, rng, min_size=config.min_size
    )
    dropped = agree[pieces] < config.iou_threshold
    labels = np.where(dropped, 0, pieces if config.split_disconnected else labels)
    labels = labels.astype(LABEL_DTYPE)
    if config.merge_distance > 0:
        labels = merge_touching(labels, emb, config.merge_distance)
    return relabel_consecutive(remove_small_objects(labels, config.min_size))
