"""Whole objects with global ids from blocks segmented on their own: own, match, compose.

Works on label images only, so it serves every method and back-end:

1. **Describe** (per block): each object of the block's read region with its size, its
   centroid in image coordinates and whether it touches a face of the read region that lies
   inside the image (then the block did not see all of it).
2. **Match** (per pair of blocks whose read regions overlap): two views of one object agree
   in the shared region: intersection over union there of at least ``iou_threshold``
   (0.5, so each object has at most one partner per neighbour).
3. **Resolve** (client, one row per object): matched views form groups (union-find). A group
   is kept when one of its views has its centroid in the core of a block that saw it; each
   kept group gets one id, consecutive from 1 in block order. The rest are views of objects
   another block owns and drop out. Objects wider than the halo are found by the matching
   and stitched from the blocks that saw parts of them.
4. **Compose** (per block core, which is a whole number of output shards, one writer): the
   block's own view paints its core first; then the other blocks' views fill what is left,
   but only with objects the block does not have a view of itself. So an object seen by two
   blocks takes each block's pixels in that block's core, and objects are never merged with
   a neighbour just for touching it across a border (cellpose#1148).

For a segmenter whose result at a pixel depends only on a neighbourhood smaller than the
halo, the composed labels equal the whole-image labels up to renumbering (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import LABEL_DTYPE
from .plan import Block, BlockPlan

#: Views of one object must agree this well (IoU in the shared region) to be joined.
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class BlockObjects:
    """The objects of one block's read region (one row each)."""

    index: int
    ids: np.ndarray  # uint32 local ids
    areas: np.ndarray  # int64 pixels in the read region
    centroids: np.ndarray  # (n, ndim) float64, image coordinates
    partial: np.ndarray  # bool: touches a read-region face inside the image

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "index": np.array(self.index),
            "ids": self.ids,
            "areas": self.areas,
            "centroids": self.centroids,
            "partial": self.partial,
        }

    @classmethod
    def from_arrays(cls, data) -> BlockObjects:
        return cls(
            int(data["index"]),
            np.asarray(data["ids"], LABEL_DTYPE),
            np.asarray(data["areas"], np.int64),
            np.asarray(data["centroids"], np.float64).reshape(len(data["ids"]), -1),
            np.asarray(data["partial"], bool),
        )


def describe_block(labels: np.ndarray, block: Block, shape: tuple[int, ...]) -> BlockObjects:
    """Size, centroid (image coordinates) and visibility of every object of ``labels``,
    the labels of ``block``'s read region in an image of spatial ``shape``."""
    labels = np.asarray(labels)
    flat = labels.ravel()
    n = int(flat.max()) + 1 if flat.size else 1
    counts = np.bincount(flat, minlength=n)
    ids = np.flatnonzero(counts[1:]).astype(LABEL_DTYPE) + 1
    areas = counts[ids].astype(np.int64)
    centroids = np.empty((ids.size, labels.ndim), np.float64)
    for axis in range(labels.ndim):
        coord = np.arange(labels.shape[axis], dtype=np.float64) + block.read[axis].start
        view = [1] * labels.ndim
        view[axis] = -1
        weights = np.broadcast_to(coord.reshape(view), labels.shape).ravel()
        sums = np.bincount(flat, weights=weights, minlength=n)
        centroids[:, axis] = sums[ids] / areas
    touching = np.zeros(n, bool)
    for axis, (sl, size) in enumerate(zip(block.read, shape, strict=True)):
        for side, at_edge in ((0, sl.start == 0), (-1, sl.stop == size)):
            if at_edge:
                continue  # the image ends here: nothing of the object lies beyond
            face = np.take(labels, side, axis=axis)
            touching[np.unique(face)] = True
    touching[0] = False
    return BlockObjects(block.index, ids, areas, centroids, touching[ids])


def match_views(
    labels_a: np.ndarray, labels_b: np.ndarray, *, iou_threshold: float = IOU_THRESHOLD
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of objects of two views of the same region that agree: ``(ids_a, ids_b, iou)``
    with IoU in this region of at least ``iou_threshold``."""
    a = np.asarray(labels_a, np.int64).ravel()
    b = np.asarray(labels_b, np.int64).ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        empty = np.zeros(0, LABEL_DTYPE)
        return empty, empty, np.zeros(0)
    size_a = np.bincount(a)
    size_b = np.bincount(b)
    keys = a[both] * (int(b.max()) + 1) + b[both]
    pairs, inter = np.unique(keys, return_counts=True)
    ia, ib = np.divmod(pairs, int(b.max()) + 1)
    iou = inter / (size_a[ia] + size_b[ib] - inter)
    keep = iou >= iou_threshold
    return ia[keep].astype(LABEL_DTYPE), ib[keep].astype(LABEL_DTYPE), iou[keep]


@dataclass(frozen=True)
class Resolution:
    """Global ids: per block, a lookup table from local id to global id (0: dropped)."""

    luts: dict[int, np.ndarray]
    n_objects: int
    stats: dict[str, int]


def _owner_blocks(plan: BlockPlan, centroids: np.ndarray) -> np.ndarray:
    """Index of the block whose core holds each centroid's pixel."""
    pixel = np.floor(centroids + 0.5).astype(np.int64)
    pixel = np.clip(pixel, 0, np.array(plan.shape) - 1)
    grid = pixel // np.array(plan.core)
    return np.ravel_multi_index(tuple(grid.T), plan.grid_shape)


def resolve(
    plan: BlockPlan,
    tables: dict[int, BlockObjects],
    matches: list[tuple[int, int, np.ndarray, np.ndarray]],
) -> Resolution:
    """Global ids for every block's objects from their descriptions and the matched views.

    ``matches`` holds ``(block_a, block_b, ids_a, ids_b)`` per pair of blocks.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    order = sorted(tables)
    start, offset = {}, 0
    for i in order:
        start[i] = offset
        offset += tables[i].ids.size
    n_nodes = offset
    if n_nodes == 0:
        return Resolution({i: np.zeros(1, LABEL_DTYPE) for i in order}, 0, _no_stats())
    block_of = np.concatenate([np.full(tables[i].ids.size, i, np.int64) for i in order])
    centroids = np.concatenate([tables[i].centroids for i in order])
    partial = np.concatenate([tables[i].partial for i in order])
    owner = _owner_blocks(plan, centroids)

    def node(i: int, ids: np.ndarray) -> np.ndarray:
        return start[i] + np.searchsorted(tables[i].ids, ids)

    src = [np.zeros(0, np.int64)]
    dst = [np.zeros(0, np.int64)]
    for a, b, ids_a, ids_b in matches:
        if ids_a.size:
            src.append(node(a, ids_a))
            dst.append(node(b, ids_b))
    src_all, dst_all = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix(
        (np.ones(src_all.size, np.int8), (src_all, dst_all)), shape=(n_nodes, n_nodes)
    )
    _, group = connected_components(graph, directed=False)
    # A group is kept when a view's centroid lies in the core of a block that saw the group.
    n_blocks = len(plan.blocks)
    seen = np.unique(group * n_blocks + block_of)
    owned = np.isin(group * n_blocks + owner, seen)
    kept_group = np.zeros(group.max() + 1, bool)
    kept_group[group[owned]] = True
    # Consecutive ids in order of each kept group's first view (block order, then local id).
    first = np.full(group.max() + 1, n_nodes, np.int64)
    np.minimum.at(first, group, np.arange(n_nodes))
    kept_ids = np.flatnonzero(kept_group)
    rank = np.zeros(group.max() + 1, LABEL_DTYPE)
    rank[kept_ids[np.argsort(first[kept_ids], kind="stable")]] = np.arange(
        1, kept_ids.size + 1, dtype=LABEL_DTYPE
    )
    global_id = rank[group]
    luts = {}
    for i in order:
        ids = tables[i].ids
        lut = np.zeros(int(ids.max()) + 1 if ids.size else 1, LABEL_DTYPE)
        lut[ids] = global_id[start[i] : start[i] + ids.size]
        luts[i] = lut
    sizes = np.bincount(group)
    seen_whole = np.zeros(group.max() + 1, bool)
    np.logical_or.at(seen_whole, group, ~partial)
    stats = {
        "views": int(n_nodes),
        "objects": int(kept_ids.size),
        "matched_views": int(src_all.size),
        "joined_objects": int(np.sum(kept_group & (sizes > 1))),
        # Objects no block saw whole (wider than the halo): stitched from matched parts.
        "wider_than_halo": int(np.sum(kept_group & ~seen_whole)),
    }
    return Resolution(luts, int(kept_ids.size), stats)


def _no_stats() -> dict[str, int]:
    return {"views": 0, "objects": 0, "matched_views": 0, "joined_objects": 0, "wider_than_halo": 0}


def lookup(lut: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Global ids of ``labels`` through ``lut`` (ids beyond the table map to 0)."""
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) >= lut.size:
        lut = np.concatenate([lut, np.zeros(int(labels.max()) + 1 - lut.size, LABEL_DTYPE)])
    return lut[labels]


def compose(
    own: np.ndarray, own_lut: np.ndarray, others: list[tuple[np.ndarray, np.ndarray, tuple]]
) -> np.ndarray:
    """The final labels of one block core.

    Parameters
    ----------
    own : ndarray
        The block's own labels over its core.
    own_lut : ndarray
        Its local-to-global table.
    others : list of (labels, lut, region)
        Other blocks' labels over the part ``region`` (relative to the core) of the core that
        their read regions cover, with their tables.
    """
    out = lookup(own_lut, own)
    mine = np.unique(own_lut[own_lut > 0])
    for labels, lut, region in others:
        theirs = lookup(lut, labels)
        # Objects this block has a view of are drawn from its own view only.
        theirs = np.where(np.isin(theirs, mine), 0, theirs)
        part = out[region]
        out[region] = np.where(part == 0, theirs, part)
    return out
