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

Live tuning calls a back-end again and again on one prediction with one knob moved; what does
not depend on the knob is kept across calls for the same arrays (:mod:`.reuse`): the finite
check and the selected points, the mean-shift clusters per bandwidth (so post-processing
knobs re-run only the post-processing), and HDBSCAN's subsample, tree and nearest-sample
spread (``epsilon`` only changes which clusters are selected from the tree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numba
import numpy as np
import torch
from skimage.measure import label as label_regions

from ..arrays import LABEL_DTYPE, adjacent_pairs, relabel_consecutive
from .labels import remove_small_objects
from .meanshift import mean_shift
from .reuse import Inputs, fingerprint

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


def _inputs(arrays: Mapping[str, np.ndarray], mask) -> Inputs:
    """The arrays a clustering of the foreground embedding depends on (what it computes
    from them may be reused across calls: :mod:`.reuse`)."""
    return Inputs(arrays["pixel_embedding"], arrays.get("foreground"), mask)


def _selected(arrays: Mapping[str, np.ndarray], mask, fg_threshold: float, inputs: Inputs):
    """The embedding and the mask of pixels to cluster (foreground, within ``mask``)."""
    emb = np.asarray(arrays["pixel_embedding"], np.float32)
    if emb.ndim < 2:
        raise ValueError(f"pixel_embedding must be (E, *spatial), got shape {emb.shape}")
    if not inputs.reuse(("finite",), lambda: bool(np.isfinite(emb).all())):
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
    inputs = _inputs(arrays, mask)
    emb, keep = _selected(arrays, mask, config.fg_threshold, inputs)
    if not keep.any():
        return np.zeros(keep.shape, LABEL_DTYPE)
    cluster = _mean_shift_clusters(inputs, emb, keep, config, rng)
    return _to_labels(keep, cluster, emb, config)


def _mean_shift_clusters(inputs: Inputs, emb, keep, config, rng) -> np.ndarray:
    """Mean-shift cluster of every kept pixel (kept across calls for the same arrays,
    ``fg_threshold``, ``bandwidth`` and kernel: the exact climb draws nothing from ``rng``)."""
    kernel = "gaussian" if getattr(config, "gaussian", False) else "flat"

    def climb():
        rng_ = np.random.default_rng(0) if rng is None else rng
        # the same points object for every bandwidth: mean_shift reuses their axes
        points = inputs.reuse(
            ("points", float(config.fg_threshold)), lambda: np.ascontiguousarray(emb[:, keep].T)
        )
        return mean_shift(points, config.bandwidth, kernel=kernel, rng=rng_)[0]

    key = ("meanshift", float(config.fg_threshold), float(config.bandwidth), kernel)
    return inputs.reuse(key, climb)


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
    inputs = _inputs(arrays, mask)
    emb, keep = _selected(arrays, mask, config.fg_threshold, inputs)
    if not keep.any():
        return np.zeros(keep.shape, LABEL_DTYPE)
    rng = np.random.default_rng(0) if rng is None else rng
    key = (
        "hdbscan",
        float(config.fg_threshold),
        config.max_points,
        config.min_cluster_size,
        config.min_samples,
        repr(rng.bit_generator.state),  # the subsample's draws
    )
    kept = inputs.reuse(key, lambda: _hdbscan_sample(emb, keep, config, rng))
    rng.bit_generator.state = kept["rng_after"]  # as if drawn again
    if kept["sample"] is None:  # too few pixels for any cluster of that size
        return np.zeros(keep.shape, LABEL_DTYPE)
    sample_labels = hdbscan.HDBSCAN(
        min_cluster_size=kept["min_cluster_size"],
        min_samples=kept["min_samples"],
        cluster_selection_epsilon=float(config.epsilon),
        core_dist_n_jobs=1,
        memory=kept["memory"],
    ).fit_predict(kept["sample"])
    nearest = kept["nearest"]
    cluster = sample_labels if nearest is None else sample_labels[nearest]
    return _to_labels(keep, cluster, emb, config)


class _TreeMemory:
    """A stand-in for the ``joblib.Memory`` that HDBSCAN takes as ``memory``: what HDBSCAN
    caches through it (the single-linkage tree of a sample, which ``epsilon`` does not
    change) is kept in this process, for as long as the back-end keeps this object."""

    def __init__(self):
        self.results: dict = {}

    def cache(self, func):
        def cached(*args, **kwargs):
            key = (
                func.__qualname__,
                tuple(fingerprint(a) if isinstance(a, np.ndarray) else a for a in args),
                tuple(sorted(kwargs.items())),
            )
            if key not in self.results:
                self.results[key] = func(*args, **kwargs)
            return self.results[key]

        return cached


def _hdbscan_sample(emb, keep, config, rng) -> dict:
    """What HDBSCAN is given, and what ``epsilon`` does not change: the subsample (drawn from
    ``rng``), the scaled ``min_cluster_size`` and ``min_samples``, a memory for its tree,
    and each pixel's nearest sample pixel (a k-d tree of the sample: ~8x faster here than a
    dense (pixels x sample) argmin)."""
    points = np.ascontiguousarray(emb[:, keep].T)
    n = points.shape[0]
    rate, sample, nearest = 1.0, points, None
    if n > config.max_points:
        pick = np.sort(rng.choice(n, size=config.max_points, replace=False))
        sample, rate = points[pick], config.max_points / n
    mcs = max(2, int(round(config.min_cluster_size * rate)))
    ms = max(1, int(round((config.min_samples or config.min_cluster_size) * rate)))
    rng_after = rng.bit_generator.state
    if sample.shape[0] <= mcs:
        return {"sample": None, "rng_after": rng_after}
    if n > config.max_points:
        from scipy.spatial import cKDTree

        workers = max(1, torch.get_num_threads())
        _, nearest = cKDTree(sample).query(points, k=1, workers=workers)
    return {
        "sample": sample.astype(np.float64),
        "min_cluster_size": mcs,
        "min_samples": ms,
        "memory": _TreeMemory(),
        "nearest": nearest,
        "rng_after": rng_after,
    }


#: Anchors x window pixels per object in :func:`object_agreement` (bounds the work of a
#: large object).
ANCHOR_BUDGET = 50_000


@numba.njit(cache=True, nogil=True)
def _bounding_boxes(labels, shape, n):  # pragma: no cover - numba
    """Start and stop of every id's bounding box (rows 1..n) on each of three axes, and the
    id's number of pixels; ``labels`` flat. (Arrays, where ``find_objects`` makes a Python
    object per id: thousands of pieces can set off a slow garbage collection.)"""
    boxes = np.empty((n + 1, 3, 2), np.int64)
    boxes[:, :, 0] = np.iinfo(np.int64).max
    boxes[:, :, 1] = -1
    sizes = np.zeros(n + 1, np.int64)
    for q in range(labels.size):
        i = labels[q]
        if i == 0:
            continue
        z, rest = divmod(q, shape[1] * shape[2])
        y, x = divmod(rest, shape[2])
        sizes[i] += 1
        for a, c in ((0, z), (1, y), (2, x)):
            boxes[i, a, 0] = min(boxes[i, a, 0], c)
            boxes[i, a, 1] = max(boxes[i, a, 1], c + 1)
    return boxes, sizes


@numba.njit(cache=True, nogil=True)
def _grown_regions(
    labels, g, keep, shape, boxes, pieces, sizes, anchors, first, r2
):  # pragma: no cover
    """IoU of each anchor's region with its piece: the face-connected pixels of the piece's
    window (``boxes``: start and stop per axis) that hold the anchor, are kept and lie
    within ``sqrt(r2)`` of the anchor in g, grown breadth-first from the anchor. Pixels are
    flat indices of an image of ``shape`` (three axes); anchors ``first[i]:first[i + 1]``
    belong to ``pieces[i]``, of ``sizes[i]`` pixels."""
    e = g.shape[0]
    n1, n2 = shape[1], shape[2]
    seen = np.zeros(labels.size, np.int64)  # the anchor's number + 1 where tested
    queue = np.empty(labels.size, np.int64)
    iou = np.empty(anchors.size)
    for i in range(pieces.size):
        piece = pieces[i]
        lo0, lo1, lo2 = boxes[i, 0, 0], boxes[i, 1, 0], boxes[i, 2, 0]
        hi0, hi1, hi2 = boxes[i, 0, 1], boxes[i, 1, 1], boxes[i, 2, 1]
        size = sizes[i]
        for k in range(first[i], first[i + 1]):
            a = anchors[k]
            seen[a] = k + 1
            queue[0] = a
            head, tail, inter = 0, 1, 0
            while head < tail:
                q = queue[head]
                head += 1
                if labels[q] == piece:
                    inter += 1
                z, rest = divmod(q, n1 * n2)
                y, x = divmod(rest, n2)
                for axis in range(3):
                    for sign in (-1, 1):
                        if axis == 0:
                            if not lo0 <= z + sign < hi0:
                                continue
                            nb = q + sign * n1 * n2
                        elif axis == 1:
                            if not lo1 <= y + sign < hi1:
                                continue
                            nb = q + sign * n2
                        else:
                            if not lo2 <= x + sign < hi2:
                                continue
                            nb = q + sign
                        if seen[nb] == k + 1:
                            continue
                        seen[nb] = k + 1
                        if not keep[nb]:
                            continue
                        d2 = 0.0
                        for c in range(e):
                            t = g[c, nb] - g[c, a]
                            d2 += t * t
                        if d2 <= r2:
                            queue[tail] = nb
                            tail += 1
            iou[k] = inter / (tail + size - inter)
    return iou


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
    so that anchors times window pixels stays within ``ANCHOR_BUDGET``. The regions are
    grown breadth-first from each anchor (a numba kernel), so only the pixels next to a
    region have their distance to the anchor computed.

    Examples
    --------
    >>> lab = np.array([[1, 1, 1, 1, 0, 2, 2]], np.uint32)
    >>> g = np.array([[[0.0, 0.0, 3.0, 3.0, 9.0, 5.0, 5.0]]])  # g splits object 1 in two
    >>> object_agreement(lab, g, lab > 0, 0.5, 4, np.random.default_rng(0), min_size=0)[1:]
    array([0.5, 1. ])
    """
    median = np.ones(int(labels.max()) + 1)
    if labels.ndim > 3:
        raise ValueError(f"object_agreement takes 1 to 3 spatial axes, not {labels.ndim}")
    shape3 = (1,) * (3 - labels.ndim) + labels.shape
    flat = np.ascontiguousarray(labels).reshape(-1)
    found, sizes = _bounding_boxes(flat, np.array(shape3, np.int64), median.size - 1)
    pieces, boxes, anchors, first = [], [], [], [0]
    for i in np.flatnonzero(sizes >= max(min_size, 1)):  # (no anchors drawn for the others)
        box = found[i, 3 - labels.ndim :]
        grow = (box[:, 1] - box[:, 0]) // 2 + 1  # half the extent, on every side
        win = tuple(
            slice(max(0, int(b0 - g)), min(n, int(b1 + g)))
            for (b0, b1), g, n in zip(box, grow, labels.shape, strict=True)
        )
        obj = (labels[win] == i).ravel()
        members = np.flatnonzero(obj)
        k = min(num_anchors, members.size, max(8, ANCHOR_BUDGET // obj.size))
        pick = rng.choice(members, size=k, replace=False)
        local = np.unravel_index(pick, labels[win].shape)
        anchors.append(
            np.ravel_multi_index(
                tuple(c + w.start for c, w in zip(local, win, strict=True)), labels.shape
            )
        )
        win3 = (slice(0, 1),) * (3 - labels.ndim) + win
        boxes.append([[w.start, w.stop] for w in win3])
        pieces.append(int(i))
        first.append(first[-1] + k)
    if not pieces:
        return median
    iou = _grown_regions(
        flat,
        np.ascontiguousarray(emb_g, np.float32).reshape(emb_g.shape[0], -1),
        np.ascontiguousarray(keep, bool).reshape(-1),
        np.array(shape3, np.int64),
        np.array(boxes, np.int64),
        np.array(pieces, np.int64),
        sizes[pieces].astype(np.int64),
        np.concatenate(anchors).astype(np.int64),
        np.array(first, np.int64),
        float(radius) ** 2,
    )
    for i, piece in enumerate(pieces):
        median[piece] = float(np.median(iou[first[i] : first[i + 1]]))
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
    inputs = _inputs(arrays, mask)
    emb, keep = _selected(arrays, mask, config.fg_threshold, inputs)
    if not keep.any():
        return np.zeros(keep.shape, LABEL_DTYPE)
    emb_g = np.asarray(arrays["pixel_embedding_g"], np.float32)
    if emb_g.shape[1:] != emb.shape[1:]:
        raise ValueError(f"pixel_embedding_g shape {emb_g.shape} != {emb.shape}")
    rng = np.random.default_rng(0) if rng is None else rng
    cluster = _mean_shift_clusters(inputs, emb, keep, config, rng)
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
