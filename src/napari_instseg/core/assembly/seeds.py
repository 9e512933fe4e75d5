"""Greedy seed clustering of spatial embeddings (the EmbedSeg post-processing).

Every pixel predicts where the centre of its object lies (``embedding``, in grid units), how
tightly its object's pixels gather around that centre (``bandwidth``, a per-axis Gaussian
precision) and how sure it is to sit near a centre (``seediness``). Objects are grown one at a
time from the most confident unclaimed pixel: that seed's predicted centre and bandwidth define
a Gaussian, and every candidate pixel whose embedding scores above one half under it joins the
seed's proposal.

The naive algorithm compares every candidate with every seed. Here the candidates are bucketed
once on a regular grid of embedding space, so each seed only looks at the few cells that
overlap the box in which its Gaussian can exceed one half; the result is the same pixel for
pixel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ..arrays import LABEL_DTYPE, relabel_consecutive

#: A pixel joins a seed's proposal when ``sum_d b_d (e_d - c_d)^2 < LN2``,
#: i.e. when ``exp(-sum_d b_d (e_d - c_d)^2) > 0.5``.
LN2 = math.log(2.0)

# Relative and absolute widening of the search box so that rounding can never drop a pixel
# that the exact test would accept (the box is only a pre-filter).
_BOX_REL_MARGIN = 1e-6
_BOX_ABS_MARGIN = 1e-9
# How many skipped (already clustered) seed candidates are inspected per vectorised step.
_SEED_CHUNK = 256


@dataclass(frozen=True)
class SeedsConfig:
    """Knobs of :func:`cluster_seeds`."""

    fg_threshold: Annotated[
        float,
        {
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "seediness above which a pixel is foreground",
        },
    ] = 0.5
    seed_threshold: Annotated[
        float,
        {
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "seediness a pixel needs to start an object",
        },
    ] = 0.9
    min_size: Annotated[
        int,
        {"min": 0, "max": 100000, "tooltip": "proposals smaller than this (pixels) are rejected"},
    ] = 10
    min_unclustered_fraction: Annotated[
        float,
        {
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "keep a proposal only if more than this fraction of it is unclaimed",
        },
    ] = 0.5
    min_unclustered_sum: Annotated[
        int,
        {"min": 0, "max": 100000, "tooltip": "stop when at most this many pixels are unclaimed"},
    ] = 0


def _check_inputs(arrays: Mapping[str, np.ndarray], mask):
    seediness = np.asarray(arrays["seediness"])
    if not np.issubdtype(seediness.dtype, np.floating):
        seediness = seediness.astype(np.float64)
    embedding = np.asarray(arrays["embedding"])
    bandwidth = np.asarray(arrays["bandwidth"])
    shape = seediness.shape
    ndim = len(shape)
    if embedding.shape != (ndim, *shape):
        raise ValueError(
            f"embedding must have shape {(ndim, *shape)} (one channel per axis), "
            f"got {embedding.shape}"
        )
    if bandwidth.shape not in ((ndim, *shape), (1, *shape)):
        raise ValueError(
            f"bandwidth must have shape {(ndim, *shape)} or {(1, *shape)}, got {bandwidth.shape}"
        )
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != shape:
            raise ValueError(f"mask shape {mask.shape} differs from seediness shape {shape}")
    return seediness, embedding, bandwidth, mask


def _cell_grid(emb: np.ndarray, radius: np.ndarray, n: int):
    """Origin, cell size and cell count per axis for bucketing ``emb`` (ndim, n).

    Cells are about half the typical search radius wide, which keeps the scanned area close to
    the box's own area, with at most about ``n`` cells in total. The grid only affects speed.
    """
    ndim = emb.shape[0]
    cap = max(1, int(round(n ** (1.0 / ndim))))
    lo = np.zeros(ndim)
    size = np.ones(ndim)
    count = np.ones(ndim, dtype=np.int64)
    sample = radius[:, :: max(1, radius.shape[1] // 4096)]
    for d in range(ndim):
        low, high = float(emb[d].min()), float(emb[d].max())
        if not (math.isfinite(low) and math.isfinite(high)):
            vals = emb[d][np.isfinite(emb[d])]
            if vals.size == 0:
                continue
            low, high = float(vals.min()), float(vals.max())
        lo[d] = low
        span = high - low
        r = sample[d][np.isfinite(sample[d]) & (sample[d] > 0)]
        want = 0.5 * float(np.median(r)) if r.size else span
        if not (want > 0 and span > 0):
            continue
        want = max(want, span / cap)
        count[d] = min(cap, int(math.floor(span / want)) + 1)
        size[d] = want
    return lo, size, count


def _cell_coords(values: np.ndarray, lo: float, size: float, count: int) -> np.ndarray:
    """Cell index along one axis (non-finite values go to some valid cell)."""
    q = values - lo
    q /= size
    np.floor(q, out=q)
    np.clip(q, 0, count - 1, out=q)  # also maps +-inf to the end cells
    if np.isnan(q).any():
        q[np.isnan(q)] = 0
    return q.astype(np.int64)


def _box_cells(c: float, r: float, lo: float, size: float, count: int) -> tuple[int, int]:
    """Inclusive range of cells that may hold points with ``|e - c| < r`` (never too small)."""
    if not (math.isfinite(c) and math.isfinite(r)):
        return 0, count - 1
    r = r * (1.0 + _BOX_REL_MARGIN) + _BOX_ABS_MARGIN * (1.0 + abs(c))
    q0 = math.floor((c - r - lo) / size)
    q1 = math.floor((c + r - lo) / size)
    return max(0, min(count - 1, q0)), max(0, min(count - 1, q1))


def _argsort_small_ints(values: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of non-negative integers below ``bound``, by 16-bit radix passes."""
    if bound > 2**32:
        return np.argsort(values, kind="stable")
    order = np.argsort((values & 0xFFFF).astype(np.uint16), kind="stable")
    if bound > 2**16:
        high = (values[order] >> 16).astype(np.uint16)
        order = order[np.argsort(high, kind="stable")]
    return order


def _descending_order(values: np.ndarray) -> np.ndarray:
    """Indices sorting ``values`` (no NaN) from largest to smallest, ties in index order.

    Same as ``np.argsort(-values, kind="stable")``; float32 uses a faster radix sort on the
    order-preserving integer image of the bits.
    """
    if values.dtype != np.float32:
        return np.argsort(-values, kind="stable")
    bits = (values + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0
    negative = (bits >> 31).astype(bool)
    ascending = np.where(negative, ~bits, bits | np.uint32(0x80000000))
    return _argsort_small_ints(~ascending, 2**32)


def cluster_seeds(
    arrays: Mapping[str, np.ndarray],
    config: SeedsConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Group pixels around greedily chosen seeds by their predicted object centres.

    Parameters
    ----------
    arrays : mapping
        ``embedding`` ``(ndim, *S)``: each pixel's predicted object centre in grid units (pixel
        coordinate times the grid spacing plus a learnt offset); ``bandwidth`` ``(ndim, *S)``
        (or ``(1, *S)`` for an isotropic one): per-axis Gaussian precision ``b_d > 0``;
        ``seediness`` ``(*S)`` in [0, 1]. ``S`` is 2D or 3D.
    config : SeedsConfig, optional
        The knobs (defaults when omitted):

        - ``fg_threshold``: candidate pixels are those with seediness above this (and inside
          ``mask``);
        - ``seed_threshold``: seeds are taken in order of decreasing seediness (ties in raster
          order) among the unclaimed candidates; clustering stops at the first one below it;
        - ``min_size``: a proposal needs at least this many pixels to become an object;
        - ``min_unclustered_fraction``: a proposal becomes an object only if more than this
          fraction of its pixels is still unclaimed. Pixels of an accepted proposal take its
          id, overwriting earlier ids;
        - ``min_unclustered_sum``: clustering stops once at most this many candidates are
          unclaimed (no object at all if there are no more candidates than this).
    mask : ndarray of bool, optional
        Pixels allowed to be foreground.
    rng : numpy.random.Generator, optional
        Unused (the result is deterministic); accepted for the back-end contract.

    Returns
    -------
    ndarray of uint32
        Labels of shape ``S``, 0 = background, ids 1..N in order of acceptance.

    Notes
    -----
    The proposal of a seed ``s`` with centre ``c = embedding[s]`` and precision
    ``b = bandwidth[s]`` is every candidate ``i`` with ``sum_d b_d (e_i,d - c_d)^2 < ln 2``
    (the Gaussian score ``exp(-...)`` above 0.5), evaluated in float64. Whether accepted or
    not, the proposal and the seed are marked claimed.
    """
    config = SeedsConfig() if config is None else config
    min_size = config.min_size
    min_unclustered_fraction = config.min_unclustered_fraction
    min_unclustered_sum = config.min_unclustered_sum
    seediness, embedding, bandwidth, mask = _check_inputs(arrays, mask)
    shape = seediness.shape
    ndim = len(shape)
    out = np.zeros(shape, dtype=LABEL_DTYPE)

    fg = seediness > config.fg_threshold
    if mask is not None:
        fg &= mask
    cand = np.flatnonzero(fg)  # raster order: ties in seediness are broken by it
    n = cand.size
    if n == 0 or n <= min_unclustered_sum:
        return out

    score = seediness.reshape(-1)[cand]
    high = np.flatnonzero(score >= config.seed_threshold)
    if high.size == 0:
        return out
    high = high[_descending_order(score[high])]  # seeds in visiting order

    bw = bandwidth.reshape(bandwidth.shape[0], -1)
    if bw.shape[0] == 1:
        bw = np.broadcast_to(bw, (ndim, bw.shape[1]))
    # per-seed Gaussian precision and the half-width of its search box along each axis
    seed_bw = bw[:, cand[high]].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        seed_radius = np.where(seed_bw > 0, np.sqrt(LN2 / seed_bw), np.inf)

    # bucket the candidates on a grid of embedding space and store them cell by cell
    emb = embedding.reshape(ndim, -1)[:, cand].astype(np.float64)
    lo, size, count = _cell_grid(emb, seed_radius, n)
    cell = _cell_coords(emb[0], lo[0], size[0], int(count[0]))
    for d in range(1, ndim):
        cell *= count[d]
        cell += _cell_coords(emb[d], lo[d], size[d], int(count[d]))
    n_cells = int(np.prod(count))
    order = _argsort_small_ints(cell, n_cells)
    offsets = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=n_cells), out=offsets[1:])
    emb = emb[:, order]
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    seed_pos = position[high]  # where each seed is stored
    seed_emb = emb[:, seed_pos]
    del cell, position

    unclustered = np.ones(n, dtype=bool)
    ids = np.zeros(n, dtype=LABEL_DTYPE)
    remaining = n
    next_id = 1
    # cells spanned by one step along each axis in the flattened cell index
    stride = [int(np.prod(count[d + 1 :])) for d in range(ndim)]
    lo, size, count = lo.tolist(), size.tolist(), count.tolist()
    last = ndim - 1
    k = 0
    n_high = high.size
    with np.errstate(invalid="ignore", over="ignore"):
        while remaining > min_unclustered_sum and k < n_high:
            # next seed: the first still-unclaimed entry of the seed list
            if not unclustered[seed_pos[k]]:
                chunk = unclustered[seed_pos[k : k + _SEED_CHUNK]]
                if not chunk.any():
                    k += chunk.size
                    continue
                k += int(chunk.argmax())
            c = seed_emb[:, k].tolist()
            b = seed_bw[:, k].tolist()
            r = seed_radius[:, k].tolist()

            # runs of stored candidates whose cells overlap the seed's box: one run per cell row
            base = None
            for d in range(last):
                q0, q1 = _box_cells(c[d], r[d], lo[d], size[d], count[d])
                step = np.arange(q0 * stride[d], (q1 + 1) * stride[d], stride[d])
                base = step if base is None else (base[:, None] + step).ravel()
            q0, q1 = _box_cells(c[last], r[last], lo[last], size[last], count[last])
            if base is None:
                idx = np.arange(offsets[q0], offsets[q1 + 1])
            else:
                starts = offsets[base + q0]
                lengths = offsets[base + (q1 + 1)] - starts
                ends = np.cumsum(lengths)
                idx = np.repeat(starts - (ends - lengths), lengths)
                idx += np.arange(idx.size)

            # exact Gaussian test on the scanned candidates (same arithmetic as a full scan)
            dist = b[0] * (emb[0, idx] - c[0]) ** 2
            for d in range(1, ndim):
                dist += b[d] * (emb[d, idx] - c[d]) ** 2
            proposal = idx[dist < LN2]

            n_prop = proposal.size
            n_fresh = int(np.count_nonzero(unclustered[proposal]))
            if n_prop >= min_size and n_prop > 0 and n_fresh / n_prop > min_unclustered_fraction:
                ids[proposal] = next_id
                next_id += 1
            unclustered[proposal] = False
            remaining -= n_fresh
            p = seed_pos[k]
            if unclustered[p]:  # the seed is claimed even when outside its own proposal
                unclustered[p] = False
                remaining -= 1
            k += 1

    if next_id == 1:
        return out
    # ids overwritten by later proposals vanish: renumber the survivors 1..N in order
    survivors = np.flatnonzero(np.bincount(ids, minlength=next_id))
    lookup = np.zeros(next_id, dtype=LABEL_DTYPE)
    lookup[survivors] = relabel_consecutive(survivors)
    out.reshape(-1)[cand[order]] = lookup[ids]
    return out
