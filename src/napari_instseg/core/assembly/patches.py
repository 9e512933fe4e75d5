"""Patch consensus: instances from one shape patch per foreground pixel (PatchPerPix).

Mais, Hirsch, Kainmueller, "PatchPerPix for Instance Segmentation", ECCV 2020.

Every foreground pixel ``c`` carries a patch ``A_c``: for each offset ``o`` inside a window of
``p**d`` pixels, the probability that ``c + o`` is in ``c``'s object. With ``TH`` the
``patch_threshold``, the steps are the paper's:

1. **Consensus.** Each patch votes on pixel pairs ``(x, y)`` it covers, both foreground. If it
   holds both above ``TH`` the vote is ``+(A(x) A(y) - TH²) / (1 - TH²)``, counted for each of
   the two orders of the pair; if it holds one above and the other below ``TH`` it is
   ``-(A(x) (1 - A(y)) - TH²) / (1 - TH²)``, counted once. The consensus of a pair is the mean
   of its votes, roughly in [-1, 1].
2. **Ranking.** A patch scores the mean agreement of its own pairs with the consensus
   (``+cons`` where it says "same", ``-cons`` where it says "different", with the same counts).
3. **Foreground cover.** Walking the patches from the best score down, a patch is chosen if
   its pixels above ``fc_threshold`` cover foreground that no chosen patch covered yet.
4. **Thin-out**: a greedy set cover keeps, among the chosen patches, the one covering most
   still-uncovered pixels, until everything is covered. Always on (the paper's
   ``skipThinCover`` can skip it): without it a pixel lies in dozens of chosen patches and
   the patch graph grows with the square of that.
5. **Patch graph.** Two chosen patches are linked with the mean consensus over the pixel
   pairs with one end in each (pixels above ``TH``); pairs with both ends in both patches
   weigh 0.2 (the paper's GPU kernel keeps 20 % of them).
6. **Partition.** Connected components of the positive links, or (``mws``) the mutex
   watershed on the patch graph: links by decreasing magnitude, positive ones merge unless a
   negative one already separates the two groups.
7. **Fill.** Each foreground pixel takes the object of the chosen patch most confident about
   it (above ``TH``); objects of at most ``merge_size`` pixels join the neighbour they share
   the longest border with (not in the paper; as in the ``mutex_watershed`` back-end), and
   objects under ``min_size`` pixels are dropped.

Bounded memory (the reference keeps two dense float32 arrays of ``(2p)**d`` values per pixel:
9.7 GB each for a 696x520 image with 41x41 patches): votes are taken only on pairs of
foreground pixels at a fixed set of offsets, the powers of two below the patch size (and the
patch's full extent) along each axis and diagonal direction, 24 offsets for 25x25 patches in
2D, 52 for 9x9x9 in 3D. The consensus is then ``pixels x offsets`` float32 (96 MB at 1024²),
and the pairs the ranking and the graph read are a systematic sample of those the paper
reads. Patches are kept as ``uint8`` rows for the decoded pixels only.

Live tuning: the consensus and the ranking depend on ``patch_threshold`` and
``fg_threshold`` only; they are cached for as long as the patches array lives (keyed by the
arrays' identity and those two knobs), so a change of ``fc_threshold``, ``mws``,
``merge_size`` or ``min_size`` re-runs steps 3-7 only.

The compiled kernels release the GIL. The voting runs in parallel (over row bands, then over
patches) and the patch graph in threads over runs of patches.
"""

from __future__ import annotations

import heapq
import itertools
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

import numba
import numpy as np
from numba import prange
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .labels import finish_labels, merge_small_segments
from .mutex import mutex_watershed_graph


@dataclass(frozen=True)
class PatchConsensusConfig:
    """Knobs of :func:`segment_patch_consensus` (the first two re-run the voting)."""

    patch_threshold: Annotated[
        float,
        {
            "min": 0.05,
            "max": 0.95,
            "step": 0.05,
            "tooltip": "patch values above this say 'same object' (re-runs the voting)",
        },
    ] = 0.6
    fg_threshold: Annotated[
        float,
        {
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "foreground probability cut (re-runs the voting); only pixels with a "
            "decoded patch count",
        },
    ] = 0.5
    fc_threshold: Annotated[
        float,
        {
            "min": 0.05,
            "max": 0.95,
            "step": 0.05,
            "tooltip": "patch values above this count for the foreground cover",
        },
    ] = 0.6
    mws: Annotated[
        bool, {"tooltip": "mutex watershed on the patch graph instead of connected components"}
    ] = True
    merge_size: Annotated[
        int,
        {
            "min": 0,
            "max": 10000,
            "tooltip": "objects up to this size (pixels) merge into their neighbour; 0: off",
        },
    ] = 0
    min_size: Annotated[
        int, {"min": 0, "max": 100000, "tooltip": "objects smaller than this (pixels) are removed"}
    ] = 15


# ---------------------------------------------------------------------------------------------
# geometry


def patch_offsets(patch_shape) -> np.ndarray:
    """``(P, ndim)`` offsets of a patch's elements from its centre, in raster order."""
    grids = np.meshgrid(*[np.arange(s) - s // 2 for s in patch_shape], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)


def patches_from_labels(labels: np.ndarray, patch_shape, pixels=None) -> np.ndarray:
    """The exact patches of ``labels`` (uint8, 255 = same object) at ``pixels`` (linear).

    What a perfect network would predict; by default at every object pixel. Elements
    outside the image are 0.
    """
    labels = np.asarray(labels)
    if pixels is None:
        pixels = np.flatnonzero(labels.ravel() > 0)
    offsets = patch_offsets(patch_shape)
    shape = np.asarray(labels.shape)
    out = np.zeros((len(pixels), len(offsets)), np.uint8)
    flat = labels.ravel()
    for start in range(0, len(pixels), 8192):
        sel = np.asarray(pixels[start : start + 8192])
        coords = np.stack(np.unravel_index(sel, labels.shape), axis=1)
        pos = coords[:, None, :] + offsets[None]
        inside = np.all((pos >= 0) & (pos < shape), axis=-1)
        pos = np.clip(pos, 0, shape - 1)
        ids = labels[tuple(np.moveaxis(pos, -1, 0))]
        same = inside & (ids == flat[sel][:, None]) & (flat[sel][:, None] > 0)
        out[start : start + len(sel)] = np.where(same, 255, 0)
    return out


def pair_offsets(patch_shape) -> np.ndarray:
    """``(K, 3)`` ZYX offsets of the voted pixel pairs for a patch of ``patch_shape``.

    One per canonical direction (first non-zero component positive; 4 in 2D, 13 in 3D) and
    per distance among the powers of two and the patch's largest in-patch distance, as long
    as the pair fits in the patch.
    """
    shape = _shape3(patch_shape)
    ndim = len(patch_shape)
    steps = [d for d in itertools.product((-1, 0, 1), repeat=3) if any(d)]
    if ndim == 2:
        steps = [d for d in steps if d[0] == 0]
    steps = [d for d in steps if next(v for v in d if v) > 0]
    reach = max(shape) - 1
    distances = sorted({2**i for i in range(reach.bit_length()) if 2**i <= reach} | {reach})
    out = []
    for d in distances:
        for step in steps:
            off = [v * d for v in step]
            if all(abs(o) <= s - 1 for o, s in zip(off, shape, strict=True)):
                out.append(off)
    return np.asarray(out, np.int64).reshape(-1, 3)


def _shape3(shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    return (1, *shape) if len(shape) == 2 else shape


# ---------------------------------------------------------------------------------------------
# kernels (ZYX; 2D is Z = 1)


@numba.njit(parallel=True, cache=True, nogil=True)
def _consensus(shape, ext, lin, partner, fg, pixels, patches, bands, band_order, th, count):  # noqa: E501  # pragma: no cover
    """Every foreground patch votes on its foreground pixel pairs at the voted offsets.

    A patch's votes land within its own window, so patches in row bands ``ext[1]`` rows
    high that are two bands apart never write to the same pixel: even bands run in
    parallel, then odd ones. ``count`` (pixels x offsets, zeros) receives the vote counts.
    """
    n = fg.size
    k_count = partner.shape[1]
    total = np.zeros((n, k_count), np.float32)
    th2 = th * th
    norm = 1.0 / (1.0 - th2)
    scale = 1.0 / 255.0
    n_bands = bands.size - 1
    for phase in range(2):
        for bi in prange((n_bands - phase + 1) // 2):
            b = 2 * bi + phase
            bu = np.empty(lin.size, np.int64)
            bp = np.empty(lin.size, np.int64)
            where = np.empty(lin.size, np.int64)
            for j in range(bands[b], bands[b + 1]):
                f = band_order[j]
                c = pixels[f]
                if not fg[c]:
                    continue
                m = _window(c, shape, ext, bu, bp)
                if m < 0:
                    for u in range(lin.size):
                        where[u] = c + lin[u]
                else:
                    where[:] = -1
                    for i in range(m):
                        where[bu[i]] = bp[i]
                for u in range(lin.size):
                    p = where[u]
                    if p < 0 or not fg[p]:
                        continue
                    ap = patches[f, u] * scale
                    for k in range(k_count):
                        v = partner[u, k]
                        if v < 0:
                            continue
                        q = where[v]
                        if q < 0 or not fg[q]:
                            continue
                        aq = patches[f, v] * scale
                        if ap > th and aq > th:  # "same": counted for both orders
                            total[p, k] += 2.0 * (ap * aq - th2) * norm
                            count[p, k] += 2
                        elif ap > th and aq < th:
                            total[p, k] -= (ap * (1.0 - aq) - th2) * norm
                            count[p, k] += 1
                        elif aq > th and ap < th:
                            total[p, k] -= (aq * (1.0 - ap) - th2) * norm
                            count[p, k] += 1
    valid = count > 0
    for i in prange(n):
        for k in range(k_count):
            if count[i, k] > 0:
                total[i, k] /= count[i, k]
    return total, valid


def _partners(ext, offsets) -> np.ndarray:
    """``(P, K)``: the patch element at offset ``k`` from element ``u``, or -1 outside."""
    elems = patch_offsets(ext)
    out = np.full((len(elems), len(offsets)), -1, np.int64)
    half = np.asarray(ext) // 2
    for k, off in enumerate(np.asarray(offsets).reshape(-1, 3)):
        pos = elems + off + half
        inside = np.all((pos >= 0) & (pos < np.asarray(ext)), axis=1)
        out[inside, k] = np.ravel_multi_index(tuple(pos[inside].T), tuple(ext))
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _rank(shape, ext, lin, partner, fg, pixels, patches, cons, valid, th):  # pragma: no cover
    """Each patch's mean agreement with the consensus over its own voted pairs."""
    k_count = partner.shape[1]
    scores = np.full(pixels.size, -np.inf, np.float32)
    scale = 1.0 / 255.0
    for f in prange(pixels.size):
        c = pixels[f]
        if not fg[c]:
            continue
        bu = np.empty(lin.size, np.int64)
        bp = np.empty(lin.size, np.int64)
        n = _window(c, shape, ext, bu, bp)
        whole = n < 0
        total = 0.0
        count = 0.0
        for i in range(lin.size if whole else n):
            u = i if whole else bu[i]
            p = c + lin[u] if whole else bp[i]
            if not fg[p]:
                continue
            ap = patches[f, u] * scale
            for k in range(k_count):
                v = partner[u, k]
                if v < 0 or not valid[p, k]:
                    continue
                aq = patches[f, v] * scale
                if ap > th and aq > th:
                    total += 2.0 * cons[p, k]
                    count += 2.0
                elif (ap > th and aq < th) or (aq > th and ap < th):
                    total -= cons[p, k]
                    count += 1.0
        scores[f] = total / count if count > 0 else -1.0
    return scores


def _linear_offsets(shape, offsets) -> np.ndarray:
    """Offsets (rows of ZYX) as steps in the raveled image of ``shape`` (ZYX)."""
    offsets = np.asarray(offsets, np.int64).reshape(-1, 3)
    return offsets @ np.array([shape[1] * shape[2], shape[2], 1], np.int64)


@numba.njit(cache=True, nogil=True)
def _window(c, shape, ext, bu, bp):  # pragma: no cover - compiled
    """Patch elements of the patch at pixel ``c`` that fall inside the image.

    Returns -1 when all do (then element ``u`` is pixel ``c + lin[u]``); otherwise fills
    ``bu`` (elements) and ``bp`` (pixels) and returns how many.
    """
    nz, ny, nx = shape
    ez, ey, ex = ext
    rz, ry, rx = ez // 2, ey // 2, ex // 2
    cz, cy, cx = c // (ny * nx), (c // nx) % ny, c % nx
    if rz <= cz < nz - rz and ry <= cy < ny - ry and rx <= cx < nx - rx:
        return -1
    n = 0
    for uz in range(ez):
        pz = cz + uz - rz
        if pz < 0 or pz >= nz:
            continue
        for uy in range(ey):
            py = cy + uy - ry
            if py < 0 or py >= ny:
                continue
            for ux in range(ex):
                px = cx + ux - rx
                if 0 <= px < nx:
                    bu[n] = (uz * ey + uy) * ex + ux
                    bp[n] = (pz * ny + py) * nx + px
                    n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _cover(shape, ext, lin, fg, pixels, patches, order, level):  # pragma: no cover - compiled
    """Rows chosen by the ranked walk: each covers some foreground not covered before."""
    covered = np.zeros(fg.size, np.bool_)
    chosen = np.empty(order.size, np.int64)
    bu = np.empty(lin.size, np.int64)
    bp = np.empty(lin.size, np.int64)
    n_chosen = 0
    for f in order:
        c = pixels[f]
        n = _window(c, shape, ext, bu, bp)
        whole = n < 0
        new = 0
        for i in range(lin.size if whole else n):
            u = i if whole else bu[i]
            if patches[f, u] > level:
                p = c + lin[u] if whole else bp[i]
                if fg[p] and not covered[p]:
                    covered[p] = True
                    new += 1
        if new > 0:
            chosen[n_chosen] = f
            n_chosen += 1
    return chosen[:n_chosen]


@numba.njit(cache=True, nogil=True)
def _members(shape, ext, lin, fg, pixels, patches, rows, level):  # pragma: no cover - compiled
    """For each of ``rows``, the foreground pixels where its patch is above ``level`` (CSR)."""
    starts = np.zeros(rows.size + 1, np.int64)
    out = np.empty(rows.size * lin.size, np.int64)
    bu = np.empty(lin.size, np.int64)
    bp = np.empty(lin.size, np.int64)
    m = 0
    for i in range(rows.size):
        f = rows[i]
        c = pixels[f]
        n = _window(c, shape, ext, bu, bp)
        whole = n < 0
        for j in range(lin.size if whole else n):
            u = j if whole else bu[j]
            if patches[f, u] > level:
                p = c + lin[u] if whole else bp[j]
                if fg[p]:
                    out[m] = p
                    m += 1
        starts[i + 1] = m
    return starts, out[:m]


@numba.njit(cache=True, nogil=True)
def _invert(starts, members, n_pixels):  # pragma: no cover - compiled
    """Pixel -> the patches (indices into the CSR rows) that hold it, as CSR, ascending."""
    counts = np.zeros(n_pixels + 1, np.int64)
    for j in range(members.size):
        counts[members[j] + 1] += 1
    ptr = np.cumsum(counts)
    fill = ptr[:-1].copy()
    who = np.empty(members.size, np.int64)
    for a in range(starts.size - 1):
        for j in range(starts[a], starts[a + 1]):
            p = members[j]
            who[fill[p]] = a
            fill[p] += 1
    return ptr, who


@numba.njit(cache=True, nogil=True)
def _graph(shape, fg, starts, members, ptr, who, offs, offl, cons, valid, a0, a1):  # noqa: E501  # pragma: no cover
    """Edges (a < b, sum, weight) from the consensus, for the patches ``a0 <= a < a1``.

    Every pixel pair with one end in ``a`` and the other in ``b`` is met in ``a``'s loop
    (offsets are taken in both directions), so ``b``'s loop skips it.
    """
    nz, ny, nx = shape
    k_count = offs.shape[0]
    mz = np.abs(offs[:, 0]).max()
    my = np.abs(offs[:, 1]).max()
    mx = np.abs(offs[:, 2]).max()
    s = starts.size - 1
    acc = np.zeros(s, np.float64)
    accn = np.zeros(s, np.float64)
    touched = np.empty(s, np.int64)
    cap = 1024
    ea = np.empty(cap, np.int64)
    eb = np.empty(cap, np.int64)
    es = np.empty(cap, np.float64)
    en = np.empty(cap, np.float64)
    stamp = np.full(s, -1, np.int64)  # stamp[b] == j: patch b holds the pixel members[j]
    n_edges = 0
    for a in range(a0, a1):
        n_touched = 0
        for j in range(starts[a], starts[a + 1]):
            p = members[j]
            for t in range(ptr[p], ptr[p + 1]):
                stamp[who[t]] = j
            pz, py, px = p // (ny * nx), (p // nx) % ny, p % nx
            inner = mz <= pz < nz - mz and my <= py < ny - my and mx <= px < nx - mx
            for k in range(k_count):
                for sign in (1, -1):
                    if inner:
                        q = p + sign * offl[k]
                    else:
                        qz = pz + sign * offs[k, 0]
                        qy = py + sign * offs[k, 1]
                        qx = px + sign * offs[k, 2]
                        if qz < 0 or qy < 0 or qx < 0 or qz >= nz or qy >= ny or qx >= nx:
                            continue
                        q = (qz * ny + qy) * nx + qx
                    first, last = ptr[q], ptr[q + 1]
                    if last == first or who[last - 1] <= a:
                        continue  # no later patch holds q (``who`` is ascending per pixel)
                    slot = p if sign == 1 else q
                    if not fg[q] or not valid[slot, k]:
                        continue
                    value = cons[slot, k]
                    q_in_a = False
                    for t in range(first, last):
                        if who[t] == a:
                            q_in_a = True
                            break
                    for t in range(first, last):
                        b = who[t]
                        if b <= a:  # the pair (a, b) is counted in a's loop only
                            continue
                        # a pair inside both patches counts a fifth
                        w = 0.2 if q_in_a and stamp[b] == j else 1.0
                        if accn[b] == 0.0:
                            touched[n_touched] = b
                            n_touched += 1
                        acc[b] += w * value
                        accn[b] += w
        for t in range(n_touched):
            b = touched[t]
            if n_edges == cap:
                cap *= 2
                ea2 = np.empty(cap, np.int64)
                eb2 = np.empty(cap, np.int64)
                es2 = np.empty(cap, np.float64)
                en2 = np.empty(cap, np.float64)
                ea2[:n_edges] = ea[:n_edges]
                eb2[:n_edges] = eb[:n_edges]
                es2[:n_edges] = es[:n_edges]
                en2[:n_edges] = en[:n_edges]
                ea, eb, es, en = ea2, eb2, es2, en2
            ea[n_edges] = a
            eb[n_edges] = b
            es[n_edges] = acc[b]
            en[n_edges] = accn[b]
            n_edges += 1
            acc[b] = 0.0
            accn[b] = 0.0
    return ea[:n_edges], eb[:n_edges], es[:n_edges], en[:n_edges]


@numba.njit(cache=True, nogil=True)
def _fill(n_pixels, pixels, patches, rows, starts, members, shape, ext, component):  # noqa: E501  # pragma: no cover
    """Each member pixel takes the component of the patch most confident about it."""
    best = np.zeros(n_pixels, np.int16)
    labels = np.zeros(n_pixels, np.int64)
    nz, ny, nx = shape
    ez, ey, ex = ext
    for a in range(rows.size):
        f = rows[a]
        c = pixels[f]
        cz, cy, cx = c // (ny * nx), (c // nx) % ny, c % nx
        for j in range(starts[a], starts[a + 1]):
            p = members[j]
            u = ((p // (ny * nx) - cz + ez // 2) * ey + ((p // nx) % ny - cy + ey // 2)) * ex + (
                p % nx - cx + ex // 2
            )
            value = np.int16(patches[f, u])
            if value > best[p]:
                best[p] = value
                labels[p] = component[a]
    return labels


# ---------------------------------------------------------------------------------------------
# steps


@dataclass
class Voting:
    """The expensive, cached part: foreground, consensus and patch scores."""

    fg: np.ndarray  # bool, flat
    offsets: np.ndarray
    consensus: np.ndarray
    valid: np.ndarray
    scores: np.ndarray
    seconds: dict


#: Votings by ``id`` of the patches array they came from, each a small dict by knobs. An
#: entry lives exactly as long as its patches array (a finalizer drops it), so a cached
#: prediction keeps its votes and nothing outlives the prediction.
_CACHE: dict[int, dict[tuple, Voting]] = {}
_PER_ARRAY = 2  # knob settings kept per patches array


def _cached(patches: np.ndarray) -> dict[tuple, Voting]:
    key = id(patches)
    if key not in _CACHE:
        _CACHE[key] = {}
        weakref.finalize(patches, _CACHE.pop, key, None)
    return _CACHE[key]


def _vote(arrays, mask, patch_threshold: float, fg_threshold: float) -> tuple[Voting, bool]:
    """The voting for these arrays and knobs, and whether it came from the cache."""
    patches = arrays["patches"]
    key = (
        id(arrays["foreground"]),
        round(float(patch_threshold), 6),
        round(float(fg_threshold), 6),
        None if mask is None else hash(np.ascontiguousarray(mask, bool).tobytes()),
    )
    votes = _cached(patches)
    if key in votes:
        return votes[key], True
    voting = _vote_now(arrays, mask, patch_threshold, fg_threshold)
    while len(votes) >= _PER_ARRAY:
        votes.pop(next(iter(votes)))
    votes[key] = voting
    return voting, False


def _vote_now(arrays, mask, patch_threshold, fg_threshold) -> Voting:
    t0 = time.perf_counter()
    prob = np.asarray(arrays["foreground"], np.float32)
    shape = _shape3(prob.shape)
    ext = _shape3(arrays["patch_shape"])
    pixels = np.asarray(arrays["patch_pixels"], np.int64)
    patches = np.ascontiguousarray(arrays["patches"], np.uint8)
    n = prob.size
    decoded = np.zeros(n, bool)
    decoded[pixels] = True
    fg = (prob.ravel() > fg_threshold) & decoded  # a foreground pixel needs a patch
    if mask is not None:
        fg &= np.asarray(mask, bool).ravel()
    offsets = pair_offsets(tuple(int(v) for v in arrays["patch_shape"]))
    th = float(patch_threshold)
    lin = _linear_offsets(shape, patch_offsets(ext))
    partner = _partners(ext, offsets)
    rows = (pixels // shape[2]) % shape[1]
    band_order = np.argsort(rows // ext[1], kind="stable")
    bands = np.searchsorted(rows[band_order] // ext[1], np.arange(-(-shape[1] // ext[1]) + 1))
    # a pair gets at most 2 votes from each of the P patches holding it
    count = np.zeros((n, len(offsets)), np.uint16 if 2 * lin.size <= 65535 else np.uint32)
    cons, valid = _consensus(
        shape, ext, lin, partner, fg, pixels, patches, bands, band_order, th, count
    )
    del count
    t1 = time.perf_counter()
    scores = _rank(shape, ext, lin, partner, fg, pixels, patches, cons, valid, th)
    t2 = time.perf_counter()
    return Voting(fg, offsets, cons, valid, scores, {"consensus": t1 - t0, "rank": t2 - t1})


@numba.njit(cache=True, nogil=True)
def _thin_out(starts, members, n_pixels):  # pragma: no cover - compiled
    """Greedy set cover (lazy): indices of the sets kept, each time the one adding most."""
    covered = np.zeros(n_pixels, np.bool_)
    heap = [(-(starts[i + 1] - starts[i]), i) for i in range(starts.size - 1)]
    heapq.heapify(heap)
    keep = np.zeros(starts.size - 1, np.bool_)
    while len(heap) > 0:
        neg, i = heapq.heappop(heap)
        gain = 0
        for j in range(starts[i], starts[i + 1]):
            if not covered[members[j]]:
                gain += 1
        if gain == 0:
            continue
        if gain != -neg and len(heap) > 0 and gain < -heap[0][0]:
            heapq.heappush(heap, (-gain, i))  # stale: its gain shrank, look again later
            continue
        keep[i] = True
        for j in range(starts[i], starts[i + 1]):
            covered[members[j]] = True
    return np.flatnonzero(keep)


def _patch_graph(shape, voting: Voting, starts, members, ptr, who):
    """:func:`_graph` over all patches, in as many threads as numba uses (it releases the
    GIL); the patches are split into runs holding about the same number of pixels."""
    offl = _linear_offsets(shape, voting.offsets)
    n = starts.size - 1
    parts = max(1, min(numba.get_num_threads(), n // 64))
    cuts = np.searchsorted(starts, np.linspace(0, starts[-1], parts + 1)[1:-1])
    bounds = [0, *sorted(set(cuts.tolist()) - {0, n}), n]
    args = (shape, voting.fg, starts, members, ptr, who, voting.offsets, offl)
    args += (voting.consensus, voting.valid)
    if len(bounds) == 2:
        return _graph(*args, 0, n)
    with ThreadPoolExecutor(len(bounds) - 1) as pool:
        runs = list(
            pool.map(lambda ab: _graph(*args, *ab), zip(bounds[:-1], bounds[1:], strict=True))
        )
    return tuple(np.concatenate(column) for column in zip(*runs, strict=True))


def _partition(n: int, ea, eb, weight, mws: bool) -> np.ndarray:
    """Component id 1..K of each of ``n`` patches."""
    if not mws:
        pos = weight > 0
        graph = coo_matrix((np.ones(int(pos.sum())), (ea[pos], eb[pos])), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        return comp.astype(np.int64) + 1
    u, v, rep = ea.astype(np.int64), eb.astype(np.int64), weight <= 0
    return mutex_watershed_graph(n, u, v, np.abs(weight).astype(np.float32), rep).astype(np.int64)


def segment_patch_consensus(
    arrays: Mapping[str, np.ndarray],
    config: PatchConsensusConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    timings: dict | None = None,
) -> np.ndarray:
    """Instances from per-pixel shape patches by consensus voting (see the module text).

    Parameters
    ----------
    arrays : mapping
        ``foreground`` (probability, spatial shape), ``patches`` (F x P uint8, probability x
        255), ``patch_pixels`` (F linear indices, raster order) and ``patch_shape`` (ndim).
    config : PatchConsensusConfig, optional
        The knobs (defaults when omitted).
    mask : ndarray of bool, optional
        Only pixels inside it are segmented.
    rng : unused
        The result is deterministic.
    timings : dict, optional
        Filled with seconds per step (and whether the voting came from the cache).

    Returns
    -------
    labels : ndarray of uint32, ids 1..N.
    """
    del rng
    config = PatchConsensusConfig() if config is None else config
    patch_threshold = config.patch_threshold
    prob = np.asarray(arrays["foreground"])
    if np.asarray(arrays["patch_shape"]).size != prob.ndim:
        raise ValueError(
            f"{np.asarray(arrays['patch_shape']).size}D patches for a {prob.ndim}D image"
        )
    if not 0.0 < patch_threshold < 1.0:
        raise ValueError(f"patch_threshold must be in (0, 1), got {patch_threshold}")
    t0 = time.perf_counter()
    voting, cached = _vote(arrays, mask, patch_threshold, config.fg_threshold)
    t1 = time.perf_counter()
    shape = _shape3(prob.shape)
    ext = _shape3(arrays["patch_shape"])
    pixels = np.asarray(arrays["patch_pixels"], np.int64)
    patches = np.ascontiguousarray(arrays["patches"], np.uint8)
    labels = np.zeros(prob.size, np.int64)
    seconds = {"voting": t1 - t0}
    candidates = np.flatnonzero(np.isfinite(voting.scores))
    if candidates.size:
        order = candidates[np.argsort(-voting.scores[candidates], kind="stable")]
        fc_level = int(np.floor(config.fc_threshold * 255.0))
        lin = _linear_offsets(shape, patch_offsets(ext))
        chosen = _cover(shape, ext, lin, voting.fg, pixels, patches, order, fc_level)
        if chosen.size:
            starts, members = _members(
                shape, ext, lin, voting.fg, pixels, patches, chosen, fc_level
            )
            chosen = chosen[_thin_out(starts, members, prob.size)]
        t2 = time.perf_counter()
        th_level = int(np.floor(patch_threshold * 255.0))
        starts, members = _members(shape, ext, lin, voting.fg, pixels, patches, chosen, th_level)
        ptr, who = _invert(starts, members, prob.size)
        ea, eb, es, en = _patch_graph(shape, voting, starts, members, ptr, who)
        w = es / en  # each pair (a, b) comes once, from a's loop
        t3 = time.perf_counter()
        component = _partition(chosen.size, ea, eb, w, config.mws)
        labels = _fill(prob.size, pixels, patches, chosen, starts, members, shape, ext, component)
        t4 = time.perf_counter()
        seconds.update(
            {"cover": t2 - t1, "graph": t3 - t2, "partition_fill": t4 - t3,
             "patches_chosen": int(chosen.size), "edges": int(ea.size)}
        )  # fmt: skip
    labels = labels.reshape(prob.shape)
    if config.merge_size > 0:
        labels = merge_small_segments(labels, config.merge_size)
    out = finish_labels(labels, config.min_size)
    if timings is not None:
        timings.update(seconds)
        timings["cached_voting"] = cached
        timings.update({f"voting_{k}": v for k, v in voting.seconds.items()})
        timings["total"] = time.perf_counter() - t0
    return out
