"""Label-image helpers shared by the back-ends.

Every back-end ends with :func:`finish_labels` (``uint32``, small objects removed, ids 1..N);
the others clean up a partition: :func:`remove_small_objects`, :func:`merge_small_segments`
(small fragments join the neighbour they share most border with) and
:func:`fill_small_holes` (background enclosed by one object joins it).
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

import numpy as np
from scipy import ndimage as ndi

from ..arrays import LABEL_DTYPE, adjacent_pairs, face_neighbours, relabel_consecutive

__all__ = ["fill_small_holes", "finish_labels", "merge_small_segments", "remove_small_objects"]


def remove_small_objects(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set objects with fewer than ``min_size`` pixels to background (labels kept as given)."""
    if min_size <= 1 or not labels.any():
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    return np.where(small[labels], 0, labels).astype(labels.dtype, copy=False)


def finish_labels(labels: np.ndarray, min_size: int) -> np.ndarray:
    """The last step of every back-end: ``uint32`` labels without the objects under
    ``min_size`` pixels, renumbered 1..N in the order of the old ids (0 stays background).

    Examples
    --------
    >>> finish_labels(np.array([[0, 7, 7, 3]]), 2)
    array([[0, 1, 1, 0]], dtype=uint32)
    """
    labels = remove_small_objects(labels.astype(LABEL_DTYPE, copy=False), min_size)
    return relabel_consecutive(labels)


def _compact_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, compact)``: the ids present, 0 first, and ``labels`` renumbered as their index."""
    top = int(labels.max())
    if top <= 4 * labels.size + 1024:  # a lookup table: linear time, no sort
        flat = labels.astype(np.intp, copy=False)
        present = np.bincount(flat.ravel(), minlength=top + 1) > 0
        present[0] = True
        lut = (np.cumsum(present) - 1).astype(np.intp)
        return np.flatnonzero(present).astype(labels.dtype), lut[flat]
    ids, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(labels.shape)
    if ids[0] != 0:  # keep 0 as the background slot
        ids = np.concatenate([[0], ids]).astype(labels.dtype)
        compact = compact + 1
    return ids, compact


def merge_small_segments(
    labels: np.ndarray, max_size: int, *, mask: np.ndarray | None = None
) -> np.ndarray:
    """Merge every segment of at most ``max_size`` pixels into its best-connected neighbour.

    Segments are visited smallest first (ties: smaller id first). Each one joins the touching
    segment (face neighbours, background excluded) with which it shares the longest boundary
    (ties: the smaller id). Sizes and boundaries are updated after each merge, so merges can
    cascade and a merged segment can outgrow ``max_size``. A segment touching no other
    segment is kept as it is.

    Parameters
    ----------
    labels : ndarray of int
        Instance labels, 0 = background (non-negative).
    max_size : int
        Segments with ``size <= max_size`` pixels are merged.
    mask : ndarray of bool, optional
        Only pixels inside count (sizes, boundaries); labels outside are returned unchanged.

    Returns
    -------
    ndarray
        Labels of the same dtype; ids are those of the surviving segments (not consecutive).
    """
    labels = np.asarray(labels)
    if max_size <= 0 or labels.size == 0 or not labels.any():
        return labels.copy()
    inside = labels if mask is None else np.where(np.asarray(mask, bool), labels, 0)
    ids, compact = _compact_ids(inside)
    size = np.bincount(compact.ravel(), minlength=ids.size).astype(np.int64)
    a, b, counts = adjacent_pairs(compact)
    small = np.flatnonzero(size <= max_size)
    small = small[small > 0]
    if small.size == 0 or a.size == 0:
        return labels.copy()
    # neighbour maps for every segment: boundary length to each touching segment
    neighbours: list[dict[int, int]] = [{} for _ in range(ids.size)]
    for x, y, c in zip(a.tolist(), b.tolist(), counts.tolist(), strict=True):
        neighbours[x][y] = c
        neighbours[y][x] = c
    sizes = size.tolist()
    target = np.arange(ids.size)
    heap = [(sizes[i], i) for i in small.tolist()]
    heapify(heap)
    while heap:
        s, i = heappop(heap)
        if target[i] != i or sizes[i] != s:
            continue  # merged already, or an outdated entry
        near = neighbours[i]
        if not near:
            continue
        j = min(near, key=lambda k: (-near[k], k))
        target[i] = j
        sizes[j] += s
        into = neighbours[j]
        del into[i]
        for k, c in near.items():
            if k == j:
                continue
            into[k] = into.get(k, 0) + c
            other = neighbours[k]
            del other[i]
            other[j] = other.get(j, 0) + c
        neighbours[i] = {}
        if sizes[j] <= max_size:
            heappush(heap, (sizes[j], j))
    # follow the chains of merges to the surviving segment
    while True:
        hop = target[target]
        if np.array_equal(hop, target):
            break
        target = hop
    merged = ids[target][compact]
    if mask is not None:
        merged = np.where(np.asarray(mask, bool), merged, labels)
    return merged.astype(labels.dtype, copy=False)


def fill_small_holes(labels: np.ndarray, max_size: int) -> np.ndarray:
    """Fill background regions under ``max_size`` pixels that a single object encloses.

    A region is enclosed when all its face neighbours belong to one object and it does not
    touch the image edge.
    """
    if max_size <= 1 or not labels.any():
        return labels
    holes, n = ndi.label(labels == 0)
    if n == 0:
        return labels
    sizes = np.bincount(holes.ravel(), minlength=n + 1)
    candidate = sizes < max_size
    candidate[0] = False
    for axis in range(labels.ndim):
        for edge in (0, -1):
            candidate[np.take(holes, edge, axis=axis)] = False
    if not candidate.any():
        return labels
    firsts, seconds = [], []
    for lo, hi in face_neighbours(labels.ndim):
        h_lo, h_hi = holes[lo].ravel(), holes[hi].ravel()
        l_lo, l_hi = labels[lo].ravel(), labels[hi].ravel()
        sel = candidate[h_lo] & (l_hi > 0)
        firsts.append(h_lo[sel])
        seconds.append(l_hi[sel])
        sel = candidate[h_hi] & (l_lo > 0)
        firsts.append(h_hi[sel])
        seconds.append(l_lo[sel])
    hole_ids = np.concatenate(firsts)
    owners = np.concatenate(seconds).astype(np.int64)
    lo_owner = np.full(n + 1, np.iinfo(np.int64).max)
    hi_owner = np.zeros(n + 1, np.int64)
    np.minimum.at(lo_owner, hole_ids, owners)
    np.maximum.at(hi_owner, hole_ids, owners)
    fill = candidate & (lo_owner == hi_owner)
    if not fill.any():
        return labels
    lut = np.where(fill, hi_owner, 0).astype(labels.dtype)
    return np.where(labels == 0, lut[holes], labels)
