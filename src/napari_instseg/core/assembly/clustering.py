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
  cluster is checked against g's embedding of a perturbed view (``pixel_embedding_g``): for
  random anchor pixels of the cluster, the pixels within ``bandwidth`` of the anchor in g form
  a mask; a cluster whose median IoU with those masks is below ``iou_threshold`` is dropped.
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
from .meanshift import mean_shift, row_chunks

_FG = {"min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "foreground probability threshold"}
_BANDWIDTH = {
    "min": 0.05,
    "max": 4.0,
    "step": 0.05,
    "tooltip": "embedding distance that joins pixels (the training delta_var)",
}
_MIN_SIZE = {"min": 0, "max": 100000, "tooltip": "objects smaller than this (pixels) are dropped"}
#: Pixels on which consistency clustering measures IoUs (a random sample on large images).
IOU_SAMPLE = 20000
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
        int, {"min": 1, "max": 1000, "tooltip": "anchor pixels checked per cluster"}
    ] = 100
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


def cluster_consistency(
    arrays: Mapping[str, np.ndarray],
    config: ConsistencyConfig | None = None,
    *,
    mask=None,
    rng=None,
) -> np.ndarray:
    """Mean-shift on f's embedding; clusters that g's embedding does not reproduce are dropped.

    The knobs are those of ``config`` (:class:`ConsistencyConfig`, defaults when omitted).
    For every cluster, up to ``num_anchors`` random pixels of it are anchors; the pixels whose
    g-embedding lies within ``bandwidth`` of an anchor's form that anchor's mask. The cluster is
    kept when the median IoU between it and its anchors' masks reaches ``iou_threshold``.
    Candidates for the masks are the clustered (foreground) pixels, or a random
    ``IOU_SAMPLE`` of them on large images.
    """
    config = ConsistencyConfig() if config is None else config
    bandwidth = config.bandwidth
    emb, keep = _selected(arrays, mask, config.fg_threshold)
    if not keep.any():
        return np.zeros(keep.shape, LABEL_DTYPE)
    emb_g = np.asarray(arrays["pixel_embedding_g"], np.float32)
    if emb_g.shape[1:] != emb.shape[1:]:
        raise ValueError(f"pixel_embedding_g shape {emb_g.shape} != {emb.shape}")
    rng = np.random.default_rng(0) if rng is None else rng
    cluster, _ = mean_shift(emb[:, keep].T, bandwidth, rng=rng)
    # IoUs are measured on a random subsample of the clustered pixels (all when few)
    cand = np.arange(cluster.size)
    if cand.size > IOU_SAMPLE:
        cand = np.sort(rng.choice(cand.size, size=IOU_SAMPLE, replace=False))
    g = torch.from_numpy(np.ascontiguousarray(emb_g[:, keep].T))
    n_clusters = int(cluster.max()) + 1
    full_sizes = np.bincount(cluster, minlength=n_clusters)
    sizes = np.bincount(cluster[cand], minlength=n_clusters)  # on the IoU pixels
    order = np.argsort(cluster, kind="stable")
    starts = np.r_[0, np.cumsum(full_sizes)[:-1]]
    anchors, owner = [], []
    for c in range(n_clusters):
        members = order[starts[c] : starts[c] + full_sizes[c]]
        k = min(config.num_anchors, members.size)
        anchors.append(rng.choice(members, size=k, replace=False))
        owner.append(np.full(k, c))
    anchors, owner = np.concatenate(anchors), np.concatenate(owner)
    lab = torch.from_numpy(cluster[cand])
    pool = g[torch.from_numpy(cand)]
    pool_sq = (pool * pool).sum(1)
    ious = np.empty(anchors.size)
    with torch.no_grad():
        for sl in row_chunks(anchors.size, pool.shape[0]):
            a = g[torch.from_numpy(anchors[sl])]
            inside = torch.addmm(pool_sq[None, :], a, pool.T, alpha=-2.0) <= (
                bandwidth**2 - (a * a).sum(1, keepdim=True)
            )
            own = torch.from_numpy(owner[sl])
            inter = (inside & (lab[None, :] == own[:, None])).sum(1).double()
            union = inside.sum(1).double() + torch.from_numpy(sizes[owner[sl]]).double() - inter
            ious[sl] = (inter / union.clamp_min(1)).numpy()
    # a mode that no pixel is nearest to has no pixels, hence no anchors: nothing to drop
    median = np.ones(n_clusters)
    for c in np.unique(owner):
        median[c] = np.median(ious[owner == c])
    dropped = median < config.iou_threshold
    cluster = np.where(dropped[cluster], -1, cluster)
    return _to_labels(keep, cluster, emb, config)
