"""Mean-shift clustering of points in a few to a few dozen dimensions.

The algorithm is the classic one with bin seeding (Comaniciu and Meer 2002; what
``sklearn.cluster.MeanShift(bin_seeding=True)`` does): seeds sit on the occupied cells of a
grid of pitch ``bandwidth``; each seed climbs to a mode by repeatedly moving to the mean of
the points within ``bandwidth`` (flat kernel) or the Gaussian-weighted mean of all points;
modes closer than ``bandwidth`` to a denser mode are dropped; every point joins its nearest
mode.

By default every seed climbs on all the points: the exact climb, scikit-learn's answer. What
makes it fast without changing that answer (``benchmarks/clustering.py`` measures the
adjusted Rand index against the exact climb on real embeddings; ``docs/spoco.md`` section 3):

- the first step of grid seeds is no distance matrix: a cell's centre is within
  ``bandwidth`` of a point only if it is the point's own cell or a neighbour across a few of
  the faces the point lies near, so each point lists the few centres in its reach
  (:func:`_first_step`). In many dimensions most centres have no point in reach and are
  dropped there, as the exact climb drops them;
- the flat kernel reads only the points that can be in reach: points are rotated onto their
  principal axes (distances unchanged) and sorted into a grid over the three leading ones;
  each seed visits the cells that its ball meets there (a projection never lengthens a
  distance, so nothing in reach is missed), skips those whose bounds put them out of
  reach, adds those wholly within from running sums, and tests the points of the others
  (:class:`_Grid`, a numba kernel);
- a seed that steps into a cell (pitch ``merge * bandwidth``, 1/200 of the bandwidth by
  default) that another seed has visited follows that seed's path from there: it ends where
  that seed ends (:func:`_climb`). Seeds on their way to one mode soon share a path;
- the principal axes do not depend on the bandwidth: for the same points they are computed
  once (:mod:`.reuse`), so moving the bandwidth slider does not compute them again.

The kernel runs on one thread: on a machine shared with other work, threads waiting for each
other cost more than they save.

``sample_size`` > 0 climbs on one random sample of the points instead, refines the modes
reached on all points, and seeds again from sample points left further than ``bandwidth``
from every mode. It is kept for comparison: which shallow modes survive then depends on the
sample (ARI 0.77-0.87 against the exact climb on the benchmark's 512² embedding).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import torch

from .reuse import Inputs

#: Elements per chunk of a (seeds x points) distance matrix (64 MB of float32).
_CHUNK_ELEMENTS = 1 << 24
#: Principal axes that :class:`_Grid` sorts points on, and its largest number of cells.
_GRID_AXES = 3
_GRID_CELLS = 1 << 21
#: Cells per bandwidth along each grid axis, and at most cells along the longest one.
_CELLS_PER_RADIUS = 4
_CELLS_PER_AXIS = 48


def row_chunks(n_rows: int, n_cols: int):
    """Slices of rows such that (rows x n_cols) stays within the chunk budget."""
    step = max(1, _CHUNK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


class _Points:
    """Points with what every distance computation reuses: squared norms and a ones column."""

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.sq = (x * x).sum(1)
        self.x1 = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # sums and counts at once

    def partial_d2(self, seeds: torch.Tensor) -> torch.Tensor:
        """``|p|^2 - 2 s.p`` (seeds x points): the squared distance minus ``|s|^2``."""
        return torch.addmm(self.sq[None, :], seeds, self.x.T, alpha=-2.0)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _cell_range(s, r, lo, pitch, n):  # pragma: no cover - numba
    """Cells (first, last) of one grid axis within ``r`` of coordinate ``s``."""
    first = max(int(math.floor((s - r - lo) / pitch)), 0)
    return first, min(int(math.floor((s + r - lo) / pitch)), n - 1)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _ball_sums(seeds, y, start, shape, lo, pitch, tails, prefix, r2, out):  # pragma: no cover
    """For each seed, the sum (first D columns) and number (last) of the points of ``y``
    within ``sqrt(r2)``.

    ``y`` is sorted by cell of a grid (pitch ``pitch``, origin ``lo``, ``shape`` cells) over
    its first three coordinates, ``start[c]`` the first point of cell ``c`` (C order),
    ``tails[c]`` the least and greatest norm of its points' other coordinates, ``prefix``
    the running sums (and counts) of ``y``. The seed visits the cells its ball meets on the
    three axes. The distance from the seed to a point of a cell lies between bounds made of
    the cell's box and tail norms (triangle inequality): a cell wholly out of reach is
    skipped, one wholly within adds its sums from ``prefix``, and only the others have
    their points tested. That test is branch-free (a 0/1 weight; whether a point is in reach
    is as good as random, and a mispredicted branch costs more than the arithmetic), two
    points at a time (two independent sums in flight).
    """
    m, d = seeds.shape
    r = math.sqrt(r2)
    r2f = np.float32(r2)
    n1, n2 = shape[1], shape[2]
    for i in range(m):
        s = seeds[i]
        acc = np.zeros(d, np.float32)
        whole = np.zeros(d + 1)  # sums of the cells wholly within reach
        count = np.float32(0.0)
        tau = 0.0
        for j in range(3, d):
            tau += float(s[j]) * float(s[j])
        tau = math.sqrt(tau)
        a0, b0 = _cell_range(s[0], r, lo[0], pitch, shape[0])
        a1, b1 = _cell_range(s[1], r, lo[1], pitch, n1)
        for i0 in range(a0, b0 + 1):
            # squared gap to the cell's slab and to its far side, axis by axis
            c0 = lo[0] + i0 * pitch
            g0 = max(c0 - s[0], 0.0, s[0] - c0 - pitch) ** 2
            if g0 > r2:
                continue
            f0 = max(abs(s[0] - c0), abs(s[0] - c0 - pitch)) ** 2
            for i1 in range(a1, b1 + 1):
                c1 = lo[1] + i1 * pitch
                g01 = g0 + max(c1 - s[1], 0.0, s[1] - c1 - pitch) ** 2
                if g01 > r2:
                    continue
                f01 = f0 + max(abs(s[1] - c1), abs(s[1] - c1 - pitch)) ** 2
                a2, b2 = _cell_range(s[2], math.sqrt(r2 - g01), lo[2], pitch, n2)
                row = (i0 * n1 + i1) * n2
                for i2 in range(a2, b2 + 1):
                    c = row + i2
                    p, stop = start[c], start[c + 1]
                    if p == stop:
                        continue
                    c2 = lo[2] + i2 * pitch
                    near = g01 + max(c2 - s[2], 0.0, s[2] - c2 - pitch) ** 2
                    if near + max(tails[c, 0] - tau, 0.0) ** 2 > r2:
                        continue  # no point of the cell in reach
                    far = f01 + max(abs(s[2] - c2), abs(s[2] - c2 - pitch)) ** 2
                    if far + (tails[c, 1] + tau) ** 2 <= r2:  # every point in reach
                        for j in range(d + 1):
                            whole[j] += prefix[stop, j] - prefix[p, j]
                        continue
                    while p < stop:
                        q = min(p + 1, stop - 1)  # (the last point twice, its weight 0)
                        da = np.float32(0.0)
                        db = np.float32(0.0)
                        for j in range(d):
                            ta = y[p, j] - s[j]
                            tb = y[q, j] - s[j]
                            da += ta * ta
                            db += tb * tb
                        wa = np.float32(1.0) if da <= r2f else np.float32(0.0)
                        wb = np.float32(1.0) if db <= r2f and q > p else np.float32(0.0)
                        for j in range(d):
                            acc[j] += wa * y[p, j] + wb * y[q, j]
                        count += wa + wb
                        p += 2
        for j in range(d):
            out[i, j] = acc[j] + whole[j]
        out[i, d] = count + whole[d]


@numba.njit(cache=True, nogil=True)
def _prefix_sums(y):  # pragma: no cover - numba
    """Running sums of the rows of ``y`` (float64, a zero row first) with their count last."""
    n, d = y.shape
    out = np.zeros((n + 1, d + 1))
    for p in range(n):
        for j in range(d):
            out[p + 1, j] = out[p, j] + y[p, j]
        out[p + 1, d] = p + 1
    return out


@numba.njit(cache=True, nogil=True)
def _cell_tails(y, start):  # pragma: no cover - numba
    """Least and greatest norm of the coordinates after the third of each cell's points
    (``y`` sorted by cell, ``start`` the cells' first points)."""
    n_cells = start.size - 1
    out = np.zeros((n_cells, 2))
    for c in range(n_cells):
        lo, hi = np.inf, 0.0
        for p in range(start[c], start[c + 1]):
            t = 0.0
            for j in range(3, y.shape[1]):
                t += float(y[p, j]) * float(y[p, j])
            t = math.sqrt(t)
            lo, hi = min(lo, t), max(hi, t)
        out[c, 0], out[c, 1] = lo, hi
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def _rotated(x, centre, axes, width):  # pragma: no cover - numba
    """``(x - centre) @ axes`` in float32, padded with zero columns to ``width``."""
    n, d = x.shape
    y = np.zeros((n, width), np.float32)
    for p in range(n):
        for j in range(d):
            t = x[p, j] - centre[j]
            for k in range(d):
                y[p, k] += t * axes[j, k]
    return y


@numba.njit(cache=True, nogil=True, fastmath=True)
def _scatter(x, centre):  # pragma: no cover - numba
    """``(x - centre).T @ (x - centre)`` in float64."""
    n, d = x.shape
    out = np.zeros((d, d))
    t = np.empty(d)
    for p in range(n):
        for j in range(d):
            t[j] = x[p, j] - centre[j]
        for j in range(d):
            for k in range(d):
                out[j, k] += t[j] * t[k]
    return out


@numba.njit(cache=True, nogil=True)
def _sort_by_cell(y, lo, pitch, shape):  # pragma: no cover - numba
    """Counting sort of the points by grid cell (C order over the first three coordinates):
    the order, and the first point of every cell (one more entry at the end)."""
    n = y.shape[0]
    lin = np.empty(n, np.int64)
    for p in range(n):
        cell = 0
        for a in range(3):
            k = int(math.floor((y[p, a] - lo[a]) / pitch))
            cell = cell * shape[a] + min(max(k, 0), shape[a] - 1)
        lin[p] = cell
    start = np.zeros(shape[0] * shape[1] * shape[2] + 1, np.int64)
    for p in range(n):
        start[lin[p] + 1] += 1
    for c in range(1, start.size):
        start[c] += start[c - 1]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    for p in range(n):
        order[fill[lin[p]]] = p
        fill[lin[p]] += 1
    return order, start


@numba.njit(cache=True, nogil=True)
def _cell_of(x, p, pitch, weights, offset):  # pragma: no cover - numba
    """The hash (:func:`_row_hash`) of the cell of point ``p`` of ``x`` in a grid of pitch
    ``pitch`` (keys ``rint(x / pitch)``) and its squared distance to the cell's centre; the
    offset to the centre per coordinate goes to ``offset``."""
    h = 0
    a = 0.0
    for j in range(x.shape[1]):
        k = np.rint(x[p, j] / pitch)
        h += np.int64(k) * weights[j]  # wraps on overflow, as numpy does
        t = x[p, j] - k * pitch
        offset[j] = t
        a += t * t
    return h, a


@numba.njit(cache=True, nogil=True)
def _cell_hashes(x, pitch, weights):  # pragma: no cover - numba
    """For each point, the hash (:func:`_row_hash`) of its cell in a grid of pitch ``pitch``
    (keys ``rint(x / pitch)``, float32) and its squared distance to the cell's centre."""
    n, d = x.shape
    hashes = np.empty(n, np.int64)
    dist = np.empty(n)
    offset = np.empty(d)
    for p in range(n):
        hashes[p], dist[p] = _cell_of(x, p, pitch, weights, offset)
    return hashes, dist


@numba.njit(cache=True, nogil=True, fastmath=True)
def _nearest_mode(y, modes):  # pragma: no cover - numba
    """Index of the nearest row of ``modes`` for every row of ``y``."""
    n, d = y.shape
    out = np.zeros(n, np.int64)
    for p in range(n):
        best = np.inf
        for m in range(modes.shape[0]):
            dist = np.float32(0.0)
            for j in range(d):
                t = y[p, j] - modes[m, j]
                dist += t * t
            if dist < best:
                best = dist
                out[p] = m
    return out


class _Axes:
    """Points on their principal axes (float32, leading axes first; fewer than three
    coordinates are padded with zeros, which change no distance). The rotation keeps every
    distance; the modes are rotated back."""

    def __init__(self, x: np.ndarray):
        self.d = x.shape[1]
        self.centre = x.mean(0, dtype=np.float64).astype(np.float32)
        _, vectors = np.linalg.eigh(_scatter(x, self.centre))
        self.axes = np.ascontiguousarray(vectors[:, ::-1], np.float32)
        self.y = self.rotate(x)

    def rotate(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        return _rotated(x, self.centre, self.axes, max(self.d, _GRID_AXES))

    def unrotate(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y[:, : self.d], np.float32) @ self.axes.T + self.centre


class _Grid:
    """Points on their principal axes (:class:`_Axes`), sorted into the cells of a grid over
    the leading three.

    On the leading axes, the points within ``radius`` of a seed lie in the cells that its
    ball there meets, since a projection never lengthens a distance. Embeddings spread over
    a few axes, so those cells hold a small share of the points. Each cell also knows the
    least and greatest norm of its points' other coordinates (``tails``), which bound their
    distance to a seed from both sides, and the running sums of the sorted points
    (``prefix``) give any cell's sum at once. The cell pitch is a quarter of the radius, at
    least the longest axis' spread over ``_CELLS_PER_AXIS`` (finer cells cost more visits
    than they save), and coarser where there would be more than ``_GRID_CELLS`` cells.
    """

    def __init__(self, axes: _Axes, radius: float):
        self.rotate, self.unrotate = axes.rotate, axes.unrotate
        y = axes.y
        lo, hi = y[:, :_GRID_AXES].min(0), y[:, :_GRID_AXES].max(0)
        extent = (hi - lo).astype(np.float64)
        pitch = max(radius / _CELLS_PER_RADIUS, float(extent.max()) / _CELLS_PER_AXIS)
        while np.prod(np.floor(extent / pitch) + 1) > _GRID_CELLS:
            pitch *= 1.25
        self.radius, self.pitch, self.lo = float(radius), float(pitch), lo.astype(np.float64)
        self.shape = (np.floor(extent / pitch) + 1).astype(np.int64)
        self.order, self.start = _sort_by_cell(y, self.lo, self.pitch, self.shape)
        self.y = y[self.order]
        self.tails = _cell_tails(self.y, self.start)
        self.prefix = _prefix_sums(self.y)

    def sums(self, seeds: np.ndarray) -> np.ndarray:
        """Sums (first columns) and numbers (last) of the points within ``radius`` of each
        seed (grid coordinates)."""
        out = np.empty((seeds.shape[0], self.y.shape[1] + 1), np.float64)
        if seeds.shape[0]:
            # seeds in cell order read the same points one after the other (cache)
            keys = np.floor((seeds[:, :_GRID_AXES] - self.lo) / self.pitch).astype(np.int64)
            keys = np.minimum(np.maximum(keys, 0), self.shape - 1)
            order = np.argsort(np.ravel_multi_index(tuple(keys.T), tuple(self.shape)))
            sorted_seeds = np.ascontiguousarray(seeds[order], np.float32)
            r2 = self.radius * self.radius
            res = np.empty_like(out)
            _ball_sums(
                sorted_seeds,
                *(self.y, self.start, self.shape, self.lo, self.pitch, self.tails, self.prefix),
                r2,
                res,
            )
            out[order] = res
        return out

    def shift(self, seeds: np.ndarray):
        """One flat-kernel step: the mean of each seed's ball (the seed itself where the
        ball is empty), and the number of points in it."""
        sums = self.sums(seeds)
        counts = sums[:, -1]
        new = seeds.copy()
        ok = counts > 0
        new[ok] = sums[ok, :-1] / counts[ok, None]
        return new, counts


class _Dense:
    """Steps that compare every seed with every point (torch, any device): the Gaussian
    kernel weighs every point, and on an accelerator dense matrices are cheap."""

    def __init__(self, x: torch.Tensor, bandwidth: float, kernel: str):
        self.pts = _Points(x)
        self.h2 = bandwidth * bandwidth
        self.kernel = kernel
        self.device = x.device

    def rotate(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32)

    def unrotate(self, y: np.ndarray) -> np.ndarray:
        return y

    def shift(self, seeds: np.ndarray):
        s_all = torch.as_tensor(seeds, device=self.device)
        new = s_all.clone()
        counts = torch.empty(s_all.shape[0], dtype=s_all.dtype, device=self.device)
        for sl in row_chunks(s_all.shape[0], self.pts.x.shape[0]):
            s = s_all[sl]
            s_sq = (s * s).sum(1, keepdim=True)
            part = self.pts.partial_d2(s)
            if self.kernel == "flat":
                # in place on the float matrix: 1.0 within the bandwidth, 0.0 outside
                sums = part.le_(self.h2 - s_sq) @ self.pts.x1
                total = sums[:, -1]
                counts[sl] = total
            else:
                counts[sl] = (part <= (self.h2 - s_sq)).sum(1).to(s.dtype)
                w = torch.exp((part + s_sq).clamp_min_(0.0).mul_(-0.5 / self.h2))
                sums = w @ self.pts.x1
                total = sums[:, -1]
            ok = total > 0
            new[sl][ok] = sums[ok, :-1] / total[ok, None]
        return new.cpu().numpy(), counts.cpu().numpy()

    def counts(self, seeds: np.ndarray) -> np.ndarray:
        s_all = torch.as_tensor(seeds, device=self.device)
        out = torch.empty(s_all.shape[0], dtype=torch.int64, device=self.device)
        for sl in row_chunks(s_all.shape[0], self.pts.x.shape[0]):
            s = s_all[sl]
            out[sl] = (self.pts.partial_d2(s) <= self.h2 - (s * s).sum(1, keepdim=True)).sum(1)
        return out.cpu().numpy()


def _counts(space, seeds: np.ndarray) -> np.ndarray:
    """Number of points within the bandwidth of each seed."""
    if isinstance(space, _Grid):
        return np.rint(space.sums(seeds)[:, -1]).astype(np.int64)
    return space.counts(seeds)


@functools.cache
def _hash_weights(d: int) -> np.ndarray:
    return np.random.default_rng(12345).integers(1, 2**62, size=d, dtype=np.int64)


def _row_hash(keys: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """One int64 per row of integer ``keys`` (a random linear hash that wraps on overflow;
    two distinct rows collide with probability about 2**-64)."""
    weights = _hash_weights(keys.shape[1]) if weights is None else weights
    with np.errstate(over="ignore"):
        return (keys.astype(np.int64) * weights).sum(axis=1)


def _dedupe(seeds: np.ndarray, pitch: float) -> np.ndarray:
    """One seed per cell of a grid of pitch ``pitch`` (the first in order)."""
    _, first = np.unique(_row_hash(np.round(seeds / pitch)), return_index=True)
    return seeds[np.sort(first)]


def _grid_cells(points: np.ndarray, bandwidth: float, min_bin_freq: int):
    """Integer keys of the grid cells (pitch ``bandwidth``) holding at least ``min_bin_freq``
    of ``points``, and the first point, members (inverse) and size of every cell."""
    b = np.float32(bandwidth)
    hashes, _ = _cell_hashes(points, b, _hash_weights(points.shape[1]))
    _, first, inverse, counts = np.unique(
        hashes, return_index=True, return_inverse=True, return_counts=True
    )
    cells = np.rint(points[first[counts >= min_bin_freq]] / b).astype(np.int64)
    return cells, first, inverse.ravel(), counts


@numba.njit(cache=True, nogil=True)
def _first_step_sums(x, pitch, weights, table, cell_of, out):  # pragma: no cover - numba
    """Adds every point of ``x`` to the rows of ``out`` of the grid centres within ``pitch``
    of it (see :func:`_first_step`): ``table`` the sorted hashes of the seeds' cells,
    ``cell_of`` their rows."""
    n, d = x.shape
    h2 = float(pitch) * float(pitch)
    delta = np.empty(d)
    step = np.empty(d, np.int64)
    # depth-first over the sets of near faces crossed (at most four), in coordinate order
    nxt = np.empty(5, np.int64)
    cost = np.empty(5)
    hsh = np.empty(5, np.int64)
    offset = np.empty(d)
    for p in range(n):
        h, own = _cell_of(x, p, pitch, weights, offset)
        for j in range(d):
            t = offset[j]
            delta[j] = max(h2 - 2.0 * float(pitch) * abs(float(t)), 0.0)
            step[j] = weights[j] if t >= 0 else -weights[j]
        if own > h2:
            continue
        budget = h2 - own
        top = 0
        nxt[0], cost[0], hsh[0] = 0, 0.0, h
        found = True
        while top >= 0:
            if found:  # the centre of the set of faces just crossed (the own one first)
                i = np.searchsorted(table, hsh[top])
                if i < table.size and table[i] == hsh[top]:
                    row = cell_of[i]
                    for j in range(d):
                        out[row, j] += x[p, j]
                    out[row, d] += 1.0
                found = False
            j = nxt[top]
            if j >= d or top == 4:
                top -= 1
                continue
            nxt[top] = j + 1
            c = cost[top] + delta[j]
            if c <= budget:
                top += 1
                nxt[top], cost[top], hsh[top] = j + 1, c, hsh[top - 1] + step[j]
                found = True
    return out


def _first_step(cells: np.ndarray, points: np.ndarray, bandwidth: float) -> np.ndarray:
    """Sums (first columns) and numbers (last) of the points within ``bandwidth`` of the
    centres of the grid cells ``cells`` (integer keys, pitch ``bandwidth``): the first step
    of grid seeds, without a (cells x points) distance matrix.

    A point's own cell centre is its nearest grid point, at squared distance ``A`` (each
    coordinate off by at most half the pitch ``b``). The centre across the face of coordinate
    ``i`` that the point lies towards is further by ``b^2 - 2 b |r_i|`` (``r`` the offset to
    the own centre), across a set of such faces by the sum, and any other centre is at least
    ``b`` away in one coordinate. So the centres in reach are the own one, if within ``b``,
    and those across sets of near faces whose increments fit in ``b^2 - A``; a face crossed
    adds at least ``b^2 / 4`` to the distance, so there are at most four. The cells are
    looked up by their hash, which changes by a fixed amount across each face.
    """
    n, d = points.shape
    out = np.zeros((len(cells), d + 1))
    if n == 0 or len(cells) == 0:
        return out
    weights = _hash_weights(d)
    table = _row_hash(cells, weights)
    cell_of = np.argsort(table)
    return _first_step_sums(points, np.float32(bandwidth), weights, table[cell_of], cell_of, out)


def _climb(space, seeds: np.ndarray, tol: float, max_iter: int, merge_pitch: float, first=None):
    """Move ``seeds`` (the space's coordinates) to modes; returns the distinct modes reached.

    A seed has converged when it moves less than ``tol``; one with no point in reach is
    dropped (as a grid cell's centre often is in many dimensions). A seed that steps into a
    cell of pitch ``merge_pitch`` that another seed visited follows that seed's path: only
    the paths' ends are modes. ``first``, when given, is the first step's sums and numbers.
    """
    n, d = seeds.shape
    if n == 0:
        return seeds
    weights = _hash_weights(d)
    visited: dict[int, int] = {}
    ends = []
    path = np.arange(n)
    for i in range(max_iter):
        if i == 0 and first is not None:
            counts = first[:, -1]
            new = seeds.copy()
            ok = counts > 0
            new[ok] = (first[ok, :-1] / counts[ok, None]).astype(seeds.dtype)
        else:
            new, counts = space.shift(seeds)
        reach = counts > 0
        still = reach & (np.linalg.norm(new - seeds, axis=1) >= tol)
        end = reach & ~still
        if merge_pitch > 0:
            # ends first: a seed that steps where another path ended ends there too
            at = np.concatenate([np.flatnonzero(end), np.flatnonzero(still)])
            cells = _row_hash(np.floor(new[at] / merge_pitch), weights)
            follow = np.ones(len(at), bool)
            for j, (cell, own) in enumerate(zip(cells.tolist(), path[at].tolist(), strict=True)):
                follow[j] = visited.setdefault(cell, own) == own
            end[at[~follow]] = False
            still[at[~follow]] = False
        ends.append(new[end])
        seeds, path = new[still], path[still]
        if len(path) == 0:
            break
    ends.append(seeds)
    done = np.concatenate(ends)
    return _dedupe(done, tol) if len(done) else done


def _suppress(space, modes: np.ndarray, bandwidth: float) -> np.ndarray:
    """Modes sorted by density (points within ``bandwidth``); those within ``bandwidth`` of a
    denser kept mode are dropped, as are modes with no point in reach."""
    if modes.shape[0] == 0:
        return modes
    counts = _counts(space, modes)
    order = np.argsort(-counts, kind="stable")
    modes = modes[order][counts[order] > 0]
    if modes.shape[0] == 0:
        return modes
    m = torch.as_tensor(modes)
    close = (torch.cdist(m, m) < bandwidth).numpy()
    keep = np.ones(modes.shape[0], bool)
    for i in range(modes.shape[0]):
        if keep[i]:
            keep[i + 1 :][close[i, i + 1 :]] = False
    return modes[keep]


def nearest(points: torch.Tensor, modes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest mode for every point, and the squared distance to it."""
    m = _Points(modes)
    idx = torch.empty(points.shape[0], dtype=torch.int64, device=points.device)
    best = torch.empty(points.shape[0], dtype=points.dtype, device=points.device)
    for sl in row_chunks(points.shape[0], modes.shape[0]):
        p = points[sl]
        part, idx[sl] = m.partial_d2(p).min(dim=1)
        best[sl] = (part + (p * p).sum(1)).clamp_min(0.0)
    return idx, best


def mean_shift(
    points: np.ndarray | torch.Tensor,
    bandwidth: float,
    *,
    kernel: str = "flat",
    seeding: str = "grid",
    min_bin_freq: int = 1,
    max_seed_points: int = 0,
    sample_size: int = 0,
    max_rounds: int = 3,
    refine_iter: int = 5,
    tol: float = 1e-3,
    merge: float = 0.005,
    max_iter: int = 300,
    rng: np.random.Generator | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Mean-shift clustering of ``points`` (N, D).

    Parameters
    ----------
    bandwidth : float
        Radius of the flat kernel, or standard deviation of the Gaussian one.
    kernel : {'flat', 'gaussian'}
        The Gaussian kernel weighs every point, so its steps compare each seed with all of
        them (dense torch matrices).
    seeding : {'grid', 'centroid'}
        Seeds are the occupied cells of a grid of pitch ``bandwidth``: the cell's centre
        ('grid', what scikit-learn's bin seeding does) or the mean of each cell's points
        ('centroid'). In many dimensions a cell's centre is often further than the bandwidth
        from all of its points, so grid seeding can miss a tight cluster altogether; centroid
        seeding cannot, but it climbs from every cell and is slower.
    min_bin_freq : int
        Only grid cells with at least this many points seed a climb.
    max_seed_points : int
        Seeds come from the grid cells of at most this many random points per round
        (0: all points).
    sample_size : int
        0 (default): seeds climb on all points, the exact climb. Otherwise seeds climb on a
        random sample of this many points ...
    refine_iter : int
        ... and the modes they reach then take at most this many steps on all points.
    max_rounds : int
        How many times to seed again from the points left further than ``bandwidth`` from
        every mode found so far (clusters the first seeds missed). When all points seed and
        climb, a new round's seeds were all climbed in the first, so there is none.
    tol : float
        A seed has converged when it moves less than ``tol * bandwidth``.
    merge : float
        A climbing seed that steps into a cell of pitch ``merge * bandwidth`` that another
        seed has visited follows that seed (0: every seed climbs to its end).
    rng : numpy Generator, optional
        Draws the subsamples (fixed seed 0 when not given).
    device : str or torch.device
        Where dense distance matrices are computed (Gaussian kernel, or any kernel off the
        CPU); the flat kernel on the CPU reads only the points in reach (:class:`_Grid`).

    Returns
    -------
    labels : ndarray (N,) of int64
        Cluster index of each point, 0..M-1, densest mode first.
    modes : ndarray (M, D) of float32
    """
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    if kernel not in ("flat", "gaussian"):
        raise ValueError(f"kernel must be 'flat' or 'gaussian', not {kernel!r}")
    if seeding not in ("centroid", "grid"):
        raise ValueError(f"seeding must be 'centroid' or 'grid', not {seeding!r}")
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    x = np.ascontiguousarray(points, np.float32)
    if x.ndim != 2:
        raise ValueError(f"points must be (N, D), got shape {tuple(x.shape)}")
    n, d = x.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, d), np.float32)
    rng = np.random.default_rng(0) if rng is None else rng
    grid_kernel = kernel == "flat" and torch.device(device).type == "cpu"

    def space_of(pts: np.ndarray):
        if grid_kernel:  # the axes do not depend on the bandwidth: kept for the next call
            return _Grid(Inputs(pts).reuse(("principal axes",), lambda: _Axes(pts)), bandwidth)
        return _Dense(torch.as_tensor(pts, device=device), bandwidth, kernel)

    def subsample(pool: np.ndarray, size: int) -> np.ndarray:
        if size and pool.shape[0] > size:
            return pool[np.sort(rng.choice(pool.shape[0], size=size, replace=False))]
        return pool

    sample = subsample(x, sample_size)
    space = space_of(sample)
    tol_b, merge_b = tol * bandwidth, merge * bandwidth

    def climb_from(seed_points: np.ndarray) -> np.ndarray:
        """Modes reached from the grid cells of ``seed_points`` (the space's coordinates)."""
        cells, first_idx, inverse, sizes = _grid_cells(seed_points, bandwidth, min_bin_freq)
        first = None
        if seeding == "grid":
            seeds = cells.astype(np.float32) * np.float32(bandwidth)
            if kernel == "flat":
                first = _first_step(cells, sample, bandwidth)
                if isinstance(space, _Grid):  # the means, on the grid's axes
                    n_in = first[:, -1:]
                    means = space.rotate(first[:, :-1] / np.maximum(n_in, 1))
                    first = np.hstack([means * n_in, n_in])
        else:
            sums = np.zeros((len(first_idx), d))
            np.add.at(sums, inverse, seed_points)
            keep = sizes >= min_bin_freq
            seeds = (sums / sizes[:, None])[keep].astype(np.float32)
        seeds = space.rotate(seeds)
        return _climb(space, seeds, tol_b, max_iter, merge_b, first)

    modes = _suppress(space, climb_from(subsample(sample, max_seed_points)), bandwidth)
    # Seed again from sample points left further than the bandwidth from every mode: seeds
    # the first draw did not have may climb to modes not found yet. When every point of the
    # climb seeded, those seeds were climbed already.
    rounds = max_rounds if sample is not x or 0 < max_seed_points < n else 0
    y_sample = space.rotate(sample) if rounds else None
    for _ in range(rounds):
        if modes.shape[0]:
            _, d2 = nearest(torch.as_tensor(y_sample), torch.as_tensor(modes))
            alone = sample[d2.numpy() > bandwidth * bandwidth]
        else:
            alone = sample
        if alone.shape[0] < max(min_bin_freq, 1):
            break
        extra = climb_from(subsample(alone, max_seed_points))
        merged = _suppress(space, np.concatenate([modes, extra]), bandwidth)
        if merged.shape[0] == modes.shape[0]:
            break
        modes = merged
    if sample is not x and modes.shape[0]:
        full = space_of(x)
        modes = full.rotate(space.unrotate(modes))
        modes = _suppress(full, _climb(full, modes, tol_b, refine_iter, merge_b), bandwidth)
        space = full
    if modes.shape[0] == 0:
        return np.zeros(n, np.int64), np.zeros((0, d), np.float32)
    if isinstance(space, _Grid) and sample is x:  # the grid holds x rotated, sorted
        labels = np.empty(n, np.int64)
        labels[space.order] = _nearest_mode(space.y, np.ascontiguousarray(modes, np.float32))
    elif isinstance(space, _Grid):
        labels = _nearest_mode(space.rotate(x), np.ascontiguousarray(modes, np.float32))
    else:
        labels = nearest(torch.as_tensor(x, device=device), torch.as_tensor(modes, device=device))
        labels = labels[0].cpu().numpy()
    return labels, space.unrotate(modes)
