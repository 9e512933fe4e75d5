"""Mutex watershed: instances from attractive and repulsive affinities, with no seeds.

Wolf et al., "The Mutex Watershed: Efficient, Parameter-Free Image Partitioning", ECCV 2018;
extended in "The Mutex Watershed and its Objective", TPAMI 2020.

An affinity network predicts, for every pixel ``p`` and offset ``o``, the probability that ``p``
and ``p + o`` belong to the same object. Short offsets give *attractive* edges (a high value
pulls the two pixels together); long offsets give *repulsive* (mutex) edges (a low value says
the two pixels must end up apart). Every edge gets a priority: the affinity itself for an
attractive edge, one minus the affinity for a repulsive one, so that the edges the network is
surest about come first.

The algorithm is Kruskal's maximum spanning forest with one extra rule. Edges are visited once,
by descending priority. A repulsive edge between two different clusters records a mutual
exclusion ("mutex") between them. An attractive edge between two different clusters merges them
unless a mutex separates them. A merged cluster inherits the mutexes of both parts. Because the
repulsive edges act as constraints instead of thresholds, no threshold and no seeds are needed:
the partition is the one the ordering of the edges implies.

Implementation: the edges are built with numpy (one slice per offset channel), ordered by a
stable radix sort on the float32 bits of the priorities, then visited by a numba kernel that
keeps the clusters in a union-find forest. The mutexes are stored twice: as a hash set of
``(root, root)`` pairs, so that "is there a mutex between these two clusters?" is one probe,
and as one linked list of partner pixels per cluster. A merge keeps the root with the longer
list; the other root's pairs are re-keyed to the survivor by walking its (shorter) list, and
the two lists are spliced in O(1), so the work per merge follows the smaller side.
The compiled functions release the GIL, so a GUI thread keeps running while they work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import numba
import numpy as np

from ..arrays import LABEL_DTYPE
from .labels import finish_labels, merge_small_segments

__all__ = [
    "MutexWatershedConfig",
    "mutex_watershed",
    "mutex_watershed_graph",
    "segment_mutex_watershed",
]

# Fibonacci hashing: multiply by 2**64 / golden ratio, keep the top bits
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_EMPTY = -1
_RADIX_BITS = 11
_RADIX_MASK = (1 << _RADIX_BITS) - 1


@dataclass(frozen=True)
class MutexWatershedConfig:
    """Knobs of :func:`segment_mutex_watershed`."""

    fg_threshold: Annotated[
        float, {"min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "foreground probability cut"}
    ] = 0.5
    stride: Annotated[
        int,
        {"min": 1, "max": 32, "tooltip": "repulsive edges kept on every stride-th pixel per axis"},
    ] = 5
    merge_size: Annotated[
        int,
        {
            "min": 0,
            "max": 10000,
            "tooltip": "segments up to this size (pixels) merge into their neighbour",
        },
    ] = 50
    min_size: Annotated[
        int, {"min": 0, "max": 100000, "tooltip": "objects smaller than this (pixels) are removed"}
    ] = 25


# ---------------------------------------------------------------------------------------------
# edges


def _axis_strides(strides, ndim: int) -> tuple[int, ...]:
    if strides is None:
        return (1,) * ndim
    if np.ndim(strides) == 0:
        strides = (int(strides),) * ndim
    strides = tuple(int(s) for s in strides)
    if len(strides) != ndim or min(strides) < 1:
        raise ValueError(f"strides must be positive, one per spatial axis; got {strides}")
    return strides


def _check_inputs(weights, offsets, n_attractive, mask):
    weights = np.asarray(weights)
    if weights.ndim not in (3, 4):
        raise ValueError(f"weights must be (C, Y, X) or (C, Z, Y, X); got shape {weights.shape}")
    if weights.dtype.kind != "f":
        raise ValueError(f"weights must be floats, got dtype {weights.dtype}")
    ndim = weights.ndim - 1
    offsets = np.asarray(offsets)
    if offsets.dtype.kind not in "iu" or offsets.shape != (weights.shape[0], ndim):
        raise ValueError(
            f"offsets must be integers of shape (C, ndim) = {(weights.shape[0], ndim)}; "
            f"got {offsets.dtype} {offsets.shape}"
        )
    n_attractive = ndim if n_attractive is None else int(n_attractive)
    if not 0 <= n_attractive <= weights.shape[0]:
        raise ValueError(f"n_attractive must lie in 0..{weights.shape[0]}; got {n_attractive}")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != weights.shape[1:]:
            raise ValueError(f"mask shape {mask.shape} differs from {weights.shape[1:]}")
    return weights, offsets.astype(np.int64), n_attractive, mask


def _build_edges(
    weights: np.ndarray,
    offsets: np.ndarray,
    *,
    n_attractive: int,
    mask: np.ndarray | None = None,
    strides: Sequence[int] | int | None = None,
    randomize_strides: bool = False,
    rng: np.random.Generator | None = None,
    origin: Sequence[int] | None = None,
):
    """All edges of the graph, in edge order: channel-major, then source pixel (raster order).

    Returns ``(u, v, priority, repulsive)``: flat pixel indices of both ends (``v = u + offset``),
    float32 priorities (``w`` for attractive, ``1 - w`` for repulsive edges) and a bool per edge.
    """
    shape = weights.shape[1:]
    ndim = len(shape)
    n = int(np.prod(shape))
    steps = _axis_strides(strides, ndim)
    origin = (0,) * ndim if origin is None else tuple(int(o) for o in origin)
    keep_p = 1.0 / float(np.prod(steps))
    if randomize_strides and rng is None:
        rng = np.random.default_rng(0)
    index_dtype = np.int32 if n < 2**31 - 1 else np.int64
    index = np.arange(n, dtype=index_dtype).reshape(shape)
    flat_step = np.array([int(np.prod(shape[d + 1 :])) for d in range(ndim)], np.int64)
    us, vs, ps, rs = [], [], [], []
    for c, offset in enumerate(offsets):
        repulsive = c >= n_attractive
        src, dst = [], []
        for d in range(ndim):
            o = int(offset[d])
            lo, hi = max(0, -o), min(shape[d], shape[d] - o)
            step = steps[d] if repulsive and not randomize_strides else 1
            # first pixel inside the range whose image coordinate is a multiple of the stride
            lo += (-(lo + origin[d])) % step
            if hi <= lo:
                break
            src.append(slice(lo, hi, step))
            dst.append(slice(lo + o, hi + o, step))
        else:
            src_t, dst_t = tuple(src), tuple(dst)
            u = index[src_t].ravel()
            keep = None
            if mask is not None:
                keep = (mask[src_t] & mask[dst_t]).ravel()
            if repulsive and randomize_strides and keep_p < 1.0:
                draw = rng.random(u.size) < keep_p
                keep = draw if keep is None else keep & draw
            w = np.asarray(weights[c][src_t], dtype=np.float32).ravel()
            if keep is not None:
                u, w = u[keep], w[keep]
            shift = index_dtype(int(offset @ flat_step))
            us.append(u)
            vs.append(u + shift)
            ps.append(np.float32(1.0) - w if repulsive else w)
            rs.append(np.full(u.size, repulsive))
    if not us:
        empty = np.zeros(0, index_dtype)
        return empty, empty.copy(), np.zeros(0, np.float32), np.zeros(0, bool)
    return np.concatenate(us), np.concatenate(vs), np.concatenate(ps), np.concatenate(rs)


@numba.njit(cache=True, nogil=True)
def _radix_sort_edges(bits, u, v, repulsive):
    """``u``, ``v``, ``repulsive`` reordered by descending priority, stably.

    ``bits`` are the float32 priorities seen as uint32. LSD radix sort in three 11-bit passes on
    a key that orders like the floats, reversed; equal priorities keep their edge order. The
    edges travel with their keys so that the kernel can then read them front to back.
    """
    n = bits.size
    keys = np.empty(n, np.uint32)
    counts = np.zeros((3, (1 << _RADIX_BITS) + 1), np.int64)
    for i in range(n):
        b = bits[i]
        if b == np.uint32(0x80000000):  # -0.0 ranks with +0.0
            b = np.uint32(0)
        if b >> np.uint32(31):
            k = b  # negative floats: ascending order is reversed bits, so descending is bits
        else:
            k = ~(b | np.uint32(0x80000000))
        keys[i] = k
        k = keys[i]  # numba may widen ``~`` to a signed int64: read back the uint32
        for p in range(3):
            counts[p, ((k >> np.uint32(p * _RADIX_BITS)) & np.uint32(_RADIX_MASK)) + 1] += 1
    u, v, repulsive = u.copy(), v.copy(), repulsive.copy()
    key_tmp = np.empty(n, np.uint32)
    u_tmp = np.empty_like(u)
    v_tmp = np.empty_like(v)
    r_tmp = np.empty_like(repulsive)
    for p in range(3):
        shift = np.uint32(p * _RADIX_BITS)
        start = counts[p]
        if start.max() == n:  # every key has the same digit: nothing to move
            continue
        for d in range(1, start.size):
            start[d] += start[d - 1]
        for i in range(n):
            k = keys[i]
            d = (k >> shift) & np.uint32(_RADIX_MASK)
            j = start[d]
            start[d] = j + 1
            key_tmp[j] = k
            u_tmp[j] = u[i]
            v_tmp[j] = v[i]
            r_tmp[j] = repulsive[i]
        keys, key_tmp = key_tmp, keys
        u, u_tmp = u_tmp, u
        v, v_tmp = v_tmp, v
        repulsive, r_tmp = r_tmp, repulsive
    return u, v, repulsive


def _priority_bits(priority: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(priority, dtype=np.float32).view(np.uint32)


def _sort_edges(u, v, priority, repulsive):
    """The edges in processing order: descending priority, ties in edge order."""
    return _radix_sort_edges(_priority_bits(priority), u, v, repulsive)


def _edge_order(priority: np.ndarray) -> np.ndarray:
    """Edge indices in processing order (the permutation :func:`_sort_edges` applies)."""
    index = np.arange(priority.size, dtype=np.int32 if priority.size < 2**31 else np.int64)
    return _radix_sort_edges(_priority_bits(priority), index, index, np.zeros(index.size, bool))[0]


# ---------------------------------------------------------------------------------------------
# kernel


@numba.njit(cache=True, nogil=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        up = parent[x]
        parent[x] = root
        x = up
    return root


@numba.njit(cache=True, nogil=True)
def _slot(keys, key, shift):
    """Slot holding ``key``, or the empty slot where it belongs (linear probing)."""
    i = np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(shift))
    last = keys.size - 1
    while True:
        k = keys[i]
        if k == key or k == _EMPTY:
            return i
        i = (i + 1) & last


@numba.njit(cache=True, nogil=True)
def _delete(keys, slot, shift):
    """Empty ``slot`` and move later keys of its probe run back, so no lookup breaks."""
    last = keys.size - 1
    hole = slot
    j = slot
    while True:
        j = (j + 1) & last
        k = keys[j]
        if k == _EMPTY:
            break
        home = np.int64((np.uint64(k) * _GOLDEN) >> np.uint64(shift))
        # the key may fill the hole unless its home lies cyclically in (hole, j]
        if hole <= j:
            stays = hole < home <= j
        else:
            stays = home > hole or home <= j
        if not stays:
            keys[hole] = k
            hole = j
    keys[hole] = _EMPTY


@numba.njit(cache=True, nogil=True)
def _table_shift(size):
    """Right shift that turns a 64-bit hash into a slot of a table of ``size = 2**bits``."""
    bits = 0
    while (1 << bits) < size:
        bits += 1
    return 64 - bits


@numba.njit(cache=True, nogil=True)
def _rehash_into(keys, fresh):
    """Copy the pairs of ``keys`` into the empty, larger table ``fresh``."""
    shift = _table_shift(fresh.size)
    for k in keys:
        if k != _EMPTY:
            fresh[_slot(fresh, k, shift)] = k


@numba.njit(cache=True, nogil=True)
def _append(head, tail, nxt, partner, length, entry, a, b):
    """Add ``b`` to the end of root ``a``'s mutex list, as entry number ``entry``."""
    partner[entry] = b
    nxt[entry] = -1
    if head[a] < 0:
        head[a] = entry
    else:
        nxt[tail[a]] = entry
    tail[a] = entry
    length[a] += 1


@numba.njit(cache=True, nogil=True)
def _mutex_kernel(
    u, v, repulsive, start, parent, size, head, tail, length, nxt, partner, keys, state
):
    """Visit the edges from ``start`` on, in the given order, updating the forest ``parent``.

    ``head``, ``tail``, ``length`` (per pixel) and ``nxt``, ``partner`` (two entries per
    repulsive edge) hold the per-root mutex lists; every mutex sits in both roots' lists.
    ``keys`` is the hash set of the mutex pairs of current roots, ``state`` = (pairs stored,
    list entries used). Returns the number of edges done; when it is short of ``u.size``, the
    table is half full and the caller grows it, then calls again from there.
    """
    n = parent.size
    shift = _table_shift(keys.size)
    half = keys.size // 2  # linear probing stays fast below half full
    used = state[0]
    n_entries = state[1]
    for e in range(start, u.size):
        ru = _find(parent, u[e])
        rv = _find(parent, v[e])
        if ru == rv:
            continue
        key = np.int64(min(ru, rv)) * n + max(ru, rv)
        slot = -1
        if length[ru] > 0 and length[rv] > 0:  # else neither can hold a mutex: no probe
            slot = _slot(keys, key, shift)
            if keys[slot] == key:
                continue  # a mutex exists already: nothing to add, no merge allowed
        if repulsive[e]:
            if used + 1 > half:
                state[0], state[1] = used, n_entries
                return e
            if slot < 0:
                slot = _slot(keys, key, shift)
            keys[slot] = key
            used += 1
            _append(head, tail, nxt, partner, length, n_entries, ru, rv)
            _append(head, tail, nxt, partner, length, n_entries + 1, rv, ru)
            n_entries += 2
            continue
        # merge: the root with the shorter mutex list is absorbed into the other one, whose
        # mutexes stay keyed correctly; the absorbed ones are re-keyed to the survivor
        if length[ru] < length[rv] or (length[ru] == length[rv] and size[ru] < size[rv]):
            gone, keep = ru, rv
        else:
            gone, keep = rv, ru
        parent[gone] = keep
        size[keep] += size[gone]
        # each pair (gone, p) becomes (keep, p). When the survivor holds that pair already,
        # the entry is unlinked: the survivor's own list has one for the same mutex, so the
        # list stays complete and gets shorter. A pair is only added where one was deleted,
        # so a merge never fills the table.
        i = head[gone]
        last = -1
        kept = 0
        while i >= 0:
            after = nxt[i]
            p = _find(parent, partner[i])
            partner[i] = p
            old = np.int64(min(gone, p)) * n + max(gone, p)
            s = _slot(keys, old, shift)
            if keys[s] == old:  # absent when an earlier entry pointed into the same cluster
                _delete(keys, s, shift)
                used -= 1
            moved = np.int64(min(keep, p)) * n + max(keep, p)
            s = _slot(keys, moved, shift)
            if keys[s] != moved:
                keys[s] = moved
                used += 1
                if last < 0:
                    head[gone] = i
                else:
                    nxt[last] = i
                last = i
                kept += 1
            i = after
        if last >= 0:
            nxt[last] = -1
            if head[keep] < 0:
                head[keep] = head[gone]
            else:
                nxt[tail[keep]] = head[gone]
            tail[keep] = last
            length[keep] += kept
    state[0], state[1] = used, n_entries
    return u.size


def _solve(u, v, repulsive, n, *, table_bits=None):
    """Union-find forest after the edges, given in processing order, over ``n`` pixels.

    The mutex table starts with ``2**table_bits`` slots (default: at least one per repulsive
    edge; tests start tiny to force many rehashes). It is grown here rather than in the
    kernel because numpy asks the OS for huge pages on large arrays: fewer TLB misses on a
    table that is probed at random (about 10% of the kernel time at 512², stride 1).
    """
    n_rep = int(np.count_nonzero(repulsive))
    n_entries = 2 * n_rep
    entry_dtype = np.int32 if n_entries < 2**31 - 1 else np.int64
    parent = np.arange(n, dtype=u.dtype)
    size = np.ones(n, np.int32 if n < 2**31 - 1 else np.int64)
    head = np.full(n, -1, entry_dtype)
    tail = np.full(n, -1, entry_dtype)
    length = np.zeros(n, entry_dtype)
    entries = np.empty((n_entries, 2), np.promote_types(entry_dtype, u.dtype))
    nxt, partner = entries[:, 0], entries[:, 1]
    if table_bits is None:
        table_bits = max(10, n_rep.bit_length())
    keys = np.full(1 << table_bits, _EMPTY, np.int64)
    state = np.zeros(2, np.int64)
    done = 0
    while True:
        done = _mutex_kernel(
            u, v, repulsive, done, parent, size, head, tail, length, nxt, partner, keys, state
        )
        if done == u.size:
            return parent
        fresh = np.full(2 * keys.size, _EMPTY, np.int64)
        _rehash_into(keys, fresh)
        keys = fresh


@numba.njit(cache=True, nogil=True)
def _label_roots(parent, inside):
    """Labels 1..N in order of first appearance (raster order) of each root; 0 outside."""
    n = parent.size
    labels = np.zeros(n, np.uint32)
    ids = np.zeros(n, np.uint32)
    count = 0
    for p in range(n):
        if inside[p]:
            r = _find(parent, p)
            if ids[r] == 0:
                count += 1
                ids[r] = count
            labels[p] = ids[r]
    return labels


def mutex_watershed_graph(
    n_nodes: int,
    u: np.ndarray,
    v: np.ndarray,
    priority: np.ndarray,
    repulsive: np.ndarray,
    *,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Partition the nodes of a graph with the mutex watershed.

    The graph form of :func:`mutex_watershed` (elf's ``compute_mws_clustering``): edges are
    visited by descending ``priority`` (ties in the given order); a repulsive edge records a
    mutex between its two clusters, an attractive one merges them unless a mutex separates
    them.

    Parameters
    ----------
    n_nodes : int
        Nodes are ``0 .. n_nodes - 1``.
    u, v : ndarray of int, shape (E,)
        The two ends of each edge (one integer dtype for both).
    priority : ndarray of float, shape (E,)
        Compared in float32; the surest edges first (an affinity ``w`` for an attractive edge,
        ``1 - w`` for a repulsive one).
    repulsive : ndarray of bool, shape (E,)
        Which edges are mutex edges.
    mask : ndarray of bool, shape (n_nodes,), optional
        Nodes to label; the others get 0 (give them no edges).

    Returns
    -------
    ndarray of uint32, shape (n_nodes,)
        Cluster ids 1..K in order of each cluster's first node.

    Examples
    --------
    >>> u, v = np.array([0, 1, 0]), np.array([1, 2, 2])
    >>> mutex_watershed_graph(3, u, v, np.array([0.9, 0.5, 0.8]), np.array([False, False, True]))
    array([1, 1, 2], dtype=uint32)
    """
    u = np.asarray(u)
    v = np.asarray(v)
    repulsive = np.asarray(repulsive, bool)
    if u.dtype.kind not in "iu" or v.dtype != u.dtype:
        raise ValueError(f"u and v must share one integer dtype; got {u.dtype} and {v.dtype}")
    if not u.shape == v.shape == np.shape(priority) == repulsive.shape or u.ndim != 1:
        raise ValueError("u, v, priority and repulsive must be 1D arrays of one length")
    parent = _solve(*_sort_edges(u, v, priority, repulsive), int(n_nodes))
    inside = np.ones(int(n_nodes), bool) if mask is None else np.asarray(mask, bool)
    return _label_roots(parent, inside)


def mutex_watershed(
    weights: np.ndarray,
    offsets: np.ndarray | Sequence[Sequence[int]],
    *,
    n_attractive: int | None = None,
    mask: np.ndarray | None = None,
    strides: Sequence[int] | int | None = None,
    randomize_strides: bool = False,
    rng: np.random.Generator | None = None,
    origin: Sequence[int] | None = None,
) -> np.ndarray:
    """Partition the pixels with the mutex watershed on affinities.

    Parameters
    ----------
    weights : ndarray of float, shape (C, Y, X) or (C, Z, Y, X)
        Affinities in [0, 1]; 1 means "same object". Channel ``c`` links pixel ``p`` with
        ``p + offsets[c]`` where both lie inside the image. Compared in float32.
    offsets : array of int, shape (C, ndim)
        One offset vector per channel.
    n_attractive : int, optional
        Channels ``c < n_attractive`` are attractive (priority ``w``), the rest repulsive
        (priority ``1 - w``). Default: the number of spatial axes.
    mask : ndarray of bool, optional
        Pixels to segment; edges touching a pixel outside are dropped and those pixels get 0.
    strides : int or sequence of int, optional
        Keep repulsive edges only at pixels whose coordinates are multiples of the stride on
        every axis (attractive edges are always kept). Default 1: all edges.
    randomize_strides : bool
        Keep each repulsive edge with probability ``1 / prod(strides)`` instead.
    rng : numpy.random.Generator, optional
        Draws the random subset; default ``np.random.default_rng(0)``.
    origin : sequence of int, optional
        Image coordinates of the array's first pixel (default 0): strides count from the
        image's origin, so a block of a larger image keeps the whole image's edges.

    Returns
    -------
    labels : ndarray of uint32
        Ids 1..N in order of first appearance (raster order), 0 outside the mask. Every pixel in
        the mask gets an id, single pixels included.

    Examples
    --------
    >>> w = np.ones((3, 1, 4), np.float32)
    >>> w[2, 0, 0] = 0.0  # a sure repulsion between x=0 and x=2 ...
    >>> w[1, 0, 1] = 0.4  # ... beats a weak attraction between x=1 and x=2
    >>> mutex_watershed(w, [[-1, 0], [0, 1], [0, 2]])
    array([[1, 1, 2, 2]], dtype=uint32)
    """
    weights, offsets, n_attractive, mask = _check_inputs(weights, offsets, n_attractive, mask)
    u, v, priority, repulsive = _build_edges(
        weights,
        offsets,
        n_attractive=n_attractive,
        mask=mask,
        strides=strides,
        randomize_strides=randomize_strides,
        rng=rng,
        origin=origin,
    )
    n = int(np.prod(weights.shape[1:]))
    inside = None if mask is None else mask.ravel()
    return mutex_watershed_graph(n, u, v, priority, repulsive, mask=inside).reshape(
        weights.shape[1:]
    )


# ---------------------------------------------------------------------------------------------
# back-end


def segment_mutex_watershed(
    arrays: Mapping[str, np.ndarray],
    config: MutexWatershedConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Mutex watershed on predicted affinities, then small fragments merged and removed.

    Parameters
    ----------
    arrays : mapping
        ``affinities`` (C, *spatial) in [0, 1] and ``affinity_offsets`` (C, ndim) ints;
        channel c links pixel p with p + offsets[c]; the first ndim channels are attractive,
        the others repulsive. An optional ``foreground`` probability map restricts the
        segmentation to pixels above ``fg_threshold``; an optional ``origin`` (image
        coordinates of the first pixel, for a block of a larger image) anchors the strides.
    config : MutexWatershedConfig, optional
        The knobs (defaults when omitted): ``fg_threshold``, the foreground probability above
        which a pixel is segmented; ``stride``: repulsive edges are kept on every
        ``stride``-th pixel along each axis; ``merge_size``: segments of at most this many
        pixels merge into the neighbour they share the longest boundary with (0: no
        merging); ``min_size``: objects smaller than this (pixels) are removed at the end.
    mask : ndarray of bool, optional
        Pixels allowed to be foreground.
    rng : numpy.random.Generator, optional
        Unused (strides are regular, the result is deterministic); accepted for the contract.
    """
    config = MutexWatershedConfig() if config is None else config
    offsets = arrays.get("affinity_offsets")
    if offsets is None:
        raise ValueError("the mutex watershed needs arrays 'affinities' and 'affinity_offsets'")
    affinities = np.asarray(arrays["affinities"])
    if affinities.dtype.kind != "f":
        affinities = affinities.astype(np.float32)
    shape = affinities.shape[1:]
    keep = np.ones(shape, bool) if mask is None else np.asarray(mask, bool).copy()
    if "foreground" in arrays:
        keep &= np.asarray(arrays["foreground"]) > config.fg_threshold
    if not keep.any():
        return np.zeros(shape, LABEL_DTYPE)
    labels = mutex_watershed(
        affinities,
        np.asarray(offsets),
        n_attractive=len(shape),
        mask=keep,
        strides=max(int(config.stride), 1),
        origin=arrays.get("origin"),
    )
    if config.merge_size > 0:
        labels = merge_small_segments(labels, config.merge_size, mask=keep)
    return finish_labels(labels, config.min_size)
