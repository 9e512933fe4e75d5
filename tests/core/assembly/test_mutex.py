"""Tests for the mutex watershed, the small-segment merge and their back-end.

The fast kernel is checked against a brute-force reference written here to be obviously
correct: explicit sorted edge list, a cluster id per pixel rewritten on every merge, and the
mutexes as a plain list of pixel pairs scanned in full at every check.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from skimage.measure import label as label_components

from napari_instseg.core.assembly.mutex import (
    MutexWatershedConfig,
    _build_edges,
    _edge_order,
    _solve,
    _sort_edges,
    mutex_watershed,
    mutex_watershed_graph,
    segment_mutex_watershed,
)

OFFSETS_2D = [(-1, 0), (0, -1), (-3, 0), (0, -3), (-9, 0), (0, -9), (-27, 0), (0, -27)]


# ---------------------------------------------------------------------------------------------
# brute-force references


def reference_mutex_watershed(u, v, priority, repulsive, n):
    """Cluster id per node after the mutex watershed, done the slow and obvious way."""
    edges = sorted(range(len(u)), key=lambda e: (-float(priority[e]), e))
    cluster = list(range(n))
    mutexes = []  # (node, node) pairs, one per recorded mutex

    def constrained(a, b):
        return any(
            {cluster[x], cluster[y]} == {a, b} for x, y in mutexes
        )  # some mutex has one end in each cluster

    for e in edges:
        a, b = cluster[u[e]], cluster[v[e]]
        if a == b or constrained(a, b):
            continue
        if repulsive[e]:
            mutexes.append((int(u[e]), int(v[e])))
        else:
            cluster = [a if c == b else c for c in cluster]
    return np.array(cluster)


def reference_edges(weights, offsets, n_attractive, mask, strides):
    """The edge list by looping over channels and pixels in raster order."""
    shape = weights.shape[1:]
    u, v, prio, rep = [], [], [], []
    for c, off in enumerate(offsets):
        for p in itertools.product(*(range(s) for s in shape)):
            q = tuple(pi + oi for pi, oi in zip(p, off, strict=True))
            if not all(0 <= qi < s for qi, s in zip(q, shape, strict=True)):
                continue
            if mask is not None and not (mask[p] and mask[q]):
                continue
            repulsive = c >= n_attractive
            if repulsive and any(pi % s for pi, s in zip(p, strides, strict=True)):
                continue
            w = np.float32(weights[(c, *p)])
            u.append(np.ravel_multi_index(p, shape))
            v.append(np.ravel_multi_index(q, shape))
            prio.append(np.float32(1) - w if repulsive else w)
            rep.append(repulsive)
    return u, v, prio, rep


def same_partition(a, b):
    """True when the two label arrays group the pixels identically (ids may differ)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def first_appearance_order(labels):
    """True when the non-zero ids are 1..N and first appear in raster order."""
    flat = labels.ravel()
    ids = flat[flat > 0]
    _, first = np.unique(ids, return_index=True)
    return np.array_equal(ids[np.sort(first)], np.arange(1, len(first) + 1))


def random_problem(rng):
    ndim = int(rng.choice([2, 3]))
    shape = tuple(int(s) for s in rng.integers(1, 8 if ndim == 2 else 5, size=ndim))
    n_channels = int(rng.integers(ndim, ndim + 5))
    reach = max(shape) + 2  # some offsets reach past the image
    offsets = rng.integers(-reach, reach + 1, size=(n_channels, ndim))
    offsets[rng.random(n_channels) < 0.5] //= 3  # and many are short
    weights = rng.random((n_channels, *shape))
    if rng.random() < 0.5:
        weights = np.round(weights * 4) / 4  # many ties: tie-breaking must match
    weights = weights.astype(rng.choice([np.float32, np.float64]))
    n_attractive = ndim if rng.random() < 0.7 else int(rng.integers(0, n_channels + 1))
    mask = rng.random(shape) < 0.8 if rng.random() < 0.5 else None
    strides = [None, 2, tuple(int(s) for s in rng.integers(1, 4, size=ndim))][rng.integers(3)]
    randomize = strides is not None and rng.random() < 0.5
    return weights, offsets, n_attractive, mask, strides, randomize


# ---------------------------------------------------------------------------------------------
# against the references


@pytest.mark.parametrize("seed", range(8))
def test_edge_builder_matches_pixel_loop(seed):
    rng = np.random.default_rng(seed)
    for _ in range(10):
        weights, offsets, n_attractive, mask, strides, _ = random_problem(rng)
        ndim = weights.ndim - 1
        steps = tuple(np.broadcast_to(1 if strides is None else strides, (ndim,)).tolist())
        u, v, prio, rep = _build_edges(
            weights, offsets, n_attractive=n_attractive, mask=mask, strides=strides
        )
        ref = reference_edges(weights, offsets, n_attractive, mask, steps)
        np.testing.assert_array_equal(u, ref[0])
        np.testing.assert_array_equal(v, ref[1])
        np.testing.assert_array_equal(prio, np.array(ref[2], np.float32))
        np.testing.assert_array_equal(rep, ref[3])


def test_random_strides_keep_all_attractive_and_a_share_of_repulsive_edges():
    rng = np.random.default_rng(1)
    weights = rng.random((8, 60, 60)).astype(np.float32)
    full = _build_edges(weights, np.array(OFFSETS_2D), n_attractive=2)
    sub = _build_edges(
        weights, np.array(OFFSETS_2D), n_attractive=2, strides=(2, 3), randomize_strides=True
    )
    np.testing.assert_array_equal(full[0][~full[3]], sub[0][~sub[3]])
    full_rep = list(zip(full[0][full[3]].tolist(), full[1][full[3]].tolist(), strict=True))
    sub_rep = list(zip(sub[0][sub[3]].tolist(), sub[1][sub[3]].tolist(), strict=True))
    position = {edge: i for i, edge in enumerate(full_rep)}
    kept = [position[edge] for edge in sub_rep]  # a subset, in the same order
    assert kept == sorted(kept) and len(set(kept)) == len(kept)
    share = len(sub_rep) / len(full_rep)
    assert 1 / 6 - 0.02 < share < 1 / 6 + 0.02
    # the same generator state draws the same subset
    again = _build_edges(
        weights,
        np.array(OFFSETS_2D),
        n_attractive=2,
        strides=(2, 3),
        randomize_strides=True,
        rng=np.random.default_rng(0),
    )
    np.testing.assert_array_equal(sub[0], again[0])


def test_edge_order_is_a_stable_descending_sort():
    rng = np.random.default_rng(2)
    for n in (0, 1, 7, 5000):
        p = (np.round(rng.random(n) * 8) / 8 * 1.5 - 0.25).astype(np.float32)
        p[: n // 10] = -0.0  # ranks with +0.0
        order = np.argsort(-p, kind="stable")
        np.testing.assert_array_equal(_edge_order(p), order)
        u = rng.integers(0, 99, n).astype(np.int32)
        v = rng.integers(0, 99, n).astype(np.int32)
        rep = rng.random(n) < 0.5
        for got, want in zip(_sort_edges(u, v, p, rep), (u, v, rep), strict=True):
            np.testing.assert_array_equal(got, want[order])


@pytest.mark.parametrize("seed", range(6))
def test_kernel_matches_reference_on_arbitrary_graphs(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(10):
        n = int(rng.integers(1, 40))
        m = int(rng.integers(0, 120))
        u = rng.integers(0, n, m).astype(np.int32)
        v = rng.integers(0, n, m).astype(np.int32)  # self-loops and repeats included
        prio = (np.round(rng.random(m) * 5) / 5).astype(np.float32)
        rep = rng.random(m) < 0.4
        expected = reference_mutex_watershed(u, v, prio, rep, n)
        for bits in (1, 10):  # a 2-slot table has to grow again and again
            got = _solve(*_sort_edges(u, v, prio, rep), n, table_bits=bits)
            roots = np.array([_root(got, i) for i in range(n)])
            assert same_partition(roots, expected)


@pytest.mark.parametrize("seed", range(3))
def test_graph_solver_matches_reference_and_numbers_by_first_node(seed):
    rng = np.random.default_rng(200 + seed)
    for _ in range(10):
        n = int(rng.integers(1, 40))
        m = int(rng.integers(0, 120))
        u = rng.integers(0, n, m)
        v = rng.integers(0, n, m)
        prio = (np.round(rng.random(m) * 5) / 5).astype(np.float32)
        rep = rng.random(m) < 0.4
        got = mutex_watershed_graph(n, u, v, prio, rep)
        assert got.dtype == np.uint32 and got.shape == (n,)
        assert same_partition(got, reference_mutex_watershed(u, v, prio, rep, n))
        first = np.unique(got, return_index=True)[1]
        np.testing.assert_array_equal(got[np.sort(first)], np.arange(1, got.max() + 1))


def test_graph_solver_mask_and_bad_inputs():
    # a sure repulsion between 0 and 3 stops the chain 0-1-2-3 from closing
    u, v = np.array([0, 0, 1, 2]), np.array([3, 1, 2, 3])
    prio = np.array([0.95, 0.9, 0.9, 0.9], np.float32)
    rep = np.array([True, False, False, False])
    np.testing.assert_array_equal(mutex_watershed_graph(4, u, v, prio, rep), [1, 1, 1, 2])
    inside = np.array([True, True, True, True, False])
    np.testing.assert_array_equal(
        mutex_watershed_graph(5, u, v, prio, rep, mask=inside), [1, 1, 1, 2, 0]
    )
    with pytest.raises(ValueError, match="dtype"):
        mutex_watershed_graph(4, u, v.astype(np.int32), prio, rep)
    with pytest.raises(ValueError, match="length"):
        mutex_watershed_graph(4, u, v, prio[:3], rep)


def _root(parent, i):
    while parent[i] != i:
        i = parent[i]
    return i


@pytest.mark.parametrize("seed", range(12))
def test_mutex_watershed_matches_reference(seed):
    rng = np.random.default_rng(seed)
    for _ in range(10):
        weights, offsets, n_attractive, mask, strides, randomize = random_problem(rng)
        draw = int(rng.integers(1 << 30))
        kwargs = dict(n_attractive=n_attractive, mask=mask, strides=strides)
        kwargs["randomize_strides"] = randomize
        labels = mutex_watershed(weights, offsets, rng=np.random.default_rng(draw), **kwargs)
        u, v, prio, rep = _build_edges(weights, offsets, rng=np.random.default_rng(draw), **kwargs)
        cluster = reference_mutex_watershed(u, v, prio, rep, weights[0].size)
        inside = np.ones(weights.shape[1:], bool) if mask is None else mask
        assert labels.dtype == np.uint32 and labels.shape == weights.shape[1:]
        assert np.all(labels[~inside] == 0) and np.all(labels[inside] > 0)
        assert same_partition(labels[inside], cluster.reshape(inside.shape)[inside])
        assert first_appearance_order(labels)


def test_larger_images_match_reference_with_long_offsets_and_strides():
    rng = np.random.default_rng(7)
    weights = (np.round(rng.random((8, 20, 22)) * 10) / 10).astype(np.float32)
    offsets = np.array(OFFSETS_2D)
    for strides in (None, 3):
        labels = mutex_watershed(weights, offsets, strides=strides)
        edges = _build_edges(weights, offsets, n_attractive=2, strides=strides)
        cluster = reference_mutex_watershed(*edges, weights[0].size).reshape(labels.shape)
        assert same_partition(labels, cluster)
        assert 1 < labels.max() < labels.size
        parent = _solve(*_sort_edges(*edges), labels.size, table_bits=1)
        roots = np.array([_root(parent, i) for i in range(labels.size)]).reshape(labels.shape)
        assert same_partition(roots, cluster)


# ---------------------------------------------------------------------------------------------
# known answers


def _perfect_affinities(labels, offsets):
    """1 where the pixel and its offset partner share an object, 0 across or at background."""
    weights = np.zeros((len(offsets), *labels.shape), np.float32)
    for c, off in enumerate(offsets):
        src, dst = [], []
        for o, s in zip(off, labels.shape, strict=True):
            src.append(slice(max(0, -o), min(s, s - o)))
            dst.append(slice(max(0, o), min(s, s + o)))
        a, b = labels[tuple(src)], labels[tuple(dst)]
        weights[(c, *src)] = (a == b) & (a > 0)
    return weights


def _voronoi_labels(shape, n_seeds, seed):
    """Random convex-ish cells covering the image, ids in first-appearance order."""
    rng = np.random.default_rng(seed)
    points = rng.random((n_seeds, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"), -1)
    nearest = np.argmin(((grid[..., None, :] - points) ** 2).sum(-1), -1) + 1
    labels = label_components(nearest, background=0, connectivity=1)
    return _first_appearance(labels)


def _first_appearance(labels):
    flat = labels.ravel()
    _, first = np.unique(flat, return_index=True)
    order = flat[np.sort(first)]
    order = order[order > 0]
    lut = np.zeros(flat.max() + 1, np.uint32)
    lut[order] = np.arange(1, order.size + 1)
    return lut[labels]


def test_two_squares_split_by_a_repulsive_border():
    shape = (20, 40)
    offsets = [(-1, 0), (0, -1), (0, -4), (-4, 0)]
    weights = np.full((4, *shape), 0.9, np.float32)  # weak attraction everywhere
    weights[2:] = 1.0  # no repulsion inside the squares ...
    weights[2, :, 20:24] = 0.0  # ... a strong one across the border between x=19 and x=20
    for strides in (None, 5, (3, 7)):
        labels = mutex_watershed(weights, offsets, strides=strides)
        assert labels.max() == 2
        # the cut follows a kept repulsive edge: x=19|20 for all edges, 20|21 for (3, 7)
        cut = 20 if strides != (3, 7) else 21
        assert np.all(labels[:, :cut] == 1) and np.all(labels[:, cut:] == 2)
    # without the repulsive channels the weak attraction joins everything
    assert mutex_watershed(weights[:2], offsets[:2]).max() == 1


@pytest.mark.parametrize("shape,n_seeds", [((40, 50), 12), ((8, 24, 20), 10)])
def test_perfect_affinities_recover_the_labels(shape, n_seeds):
    truth = _voronoi_labels(shape, n_seeds, seed=3)
    ndim = len(shape)
    unit = [tuple(-int(i == d) for i in range(ndim)) for d in range(ndim)]
    long = [tuple(-4 * int(i == d) for i in range(ndim)) for d in range(ndim)]
    offsets = unit + unit + long  # short repulsive edges too: every touching pair gets a mutex
    weights = _perfect_affinities(truth, offsets)
    labels = mutex_watershed(weights, offsets)
    np.testing.assert_array_equal(labels, truth)
    # background masked out: still exact, 0 outside
    truth_bg = truth * (truth % 3 != 0)
    weights = _perfect_affinities(truth_bg, offsets)
    labels = mutex_watershed(weights, offsets, mask=truth_bg > 0)
    np.testing.assert_array_equal(labels, _first_appearance(truth_bg))


def test_mask_cuts_edges_and_zeroes_outside():
    weights = np.ones((2, 5, 9), np.float32)
    mask = np.ones((5, 9), bool)
    mask[:, 4] = False  # a wall: the two halves only meet through it
    labels = mutex_watershed(weights, [(-1, 0), (0, -1)], mask=mask)
    assert labels.max() == 2 and np.all(labels[:, 4] == 0)
    assert np.all(labels[:, :4] == 1) and np.all(labels[:, 5:] == 2)
    # long attractive edges jump the wall
    labels = mutex_watershed(
        np.ones((3, 5, 9), np.float32), [(-1, 0), (0, -1), (0, 2)], n_attractive=3, mask=mask
    )
    assert labels.max() == 1 and np.all(labels[:, 4] == 0)
    empty = mutex_watershed(weights, [(-1, 0), (0, -1)], mask=np.zeros((5, 9), bool))
    assert empty.dtype == np.uint32 and not empty.any()


def test_only_attractive_gives_connected_components_only_repulsive_gives_singletons():
    rng = np.random.default_rng(5)
    mask = rng.random((12, 13)) < 0.6
    weights = rng.random((4, 12, 13)).astype(np.float32)
    offsets = [(-1, 0), (0, -1), (-2, 0), (0, -5)]
    attract = mutex_watershed(weights[:2], offsets[:2], mask=mask)
    np.testing.assert_array_equal(
        attract, _first_appearance(label_components(mask, connectivity=1))
    )
    alone = mutex_watershed(weights, offsets, n_attractive=0, mask=mask)
    assert alone.max() == mask.sum() and np.all(alone[mask] > 0)


def test_ties_break_by_channel_then_pixel_order():
    # equal priority 1 for an attraction and a repulsion on the same pair: the attractive
    # channel comes first in edge order, so the two pixels merge
    weights = np.array([[[1.0, 1.0]], [[0.0, 0.0]]], np.float32)
    assert mutex_watershed(weights, [(0, 1), (0, 1)], n_attractive=1).max() == 1
    # three pixels, a sure mutex between x=0 and x=2, then two attractions of equal priority
    # 0.5 (x1-x2 in one channel, x1-x0 in the other): the earlier channel wins the tie
    w = np.zeros((3, 1, 3), np.float32)
    w[0, 0, 1] = 0.5  # channel (0, 1): edge x1-x2
    w[1, 0, 1] = 0.5  # channel (0, -1): edge x1-x0
    offsets = [(0, 1), (0, -1), (0, 2)]
    labels = mutex_watershed(w, offsets, n_attractive=2)
    np.testing.assert_array_equal(labels, [[1, 2, 2]])
    swapped = mutex_watershed(w[[1, 0, 2]], [offsets[1], offsets[0], offsets[2]], n_attractive=2)
    np.testing.assert_array_equal(swapped, [[1, 1, 2]])
    # within one channel, the earlier source pixel wins: x0-x1 before x1-x2
    w = np.full((2, 1, 3), 0.5, np.float32)
    w[1, 0, 0] = 0.0
    np.testing.assert_array_equal(mutex_watershed(w, [(0, 1), (0, 2)], n_attractive=1), [[1, 1, 2]])


def test_deterministic_and_dtype_independent():
    rng = np.random.default_rng(9)
    weights = np.round(rng.random((8, 30, 31)) * 8) / 8
    labels = mutex_watershed(weights.astype(np.float32), OFFSETS_2D, strides=2)
    for dtype in (np.float64, np.float16):
        np.testing.assert_array_equal(
            mutex_watershed(weights.astype(dtype), OFFSETS_2D, strides=2), labels
        )
    np.testing.assert_array_equal(
        mutex_watershed(weights.astype(np.float32), OFFSETS_2D, strides=2), labels
    )


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="offsets"):
        mutex_watershed(np.ones((2, 4, 4)), [(0, 1)])
    with pytest.raises(ValueError, match="weights"):
        mutex_watershed(np.ones((4, 4)), [(0, 1)])
    with pytest.raises(ValueError, match="strides"):
        mutex_watershed(np.ones((2, 4, 4)), [(0, 1), (1, 0)], strides=0)
    with pytest.raises(ValueError, match="mask"):
        mutex_watershed(np.ones((2, 4, 4)), [(0, 1), (1, 0)], mask=np.ones((3, 4), bool))


# ---------------------------------------------------------------------------------------------
# back-end


def _scene(shape=(48, 64), seed=0):
    truth = _voronoi_labels(shape, 9, seed)
    truth = np.where(truth % 4 == 0, 0, truth)
    offsets = np.array(OFFSETS_2D[:2] + [(-1, 0), (0, -1)] + OFFSETS_2D[2:6])
    rng = np.random.default_rng(seed)
    aff = _perfect_affinities(truth, offsets) * 0.8 + 0.1
    aff = np.clip(aff + rng.normal(0, 0.05, aff.shape), 0, 1).astype(np.float32)
    fg = np.clip((truth > 0) * 0.9 + rng.normal(0, 0.02, shape), 0, 1).astype(np.float32)
    return truth, {"affinities": aff, "affinity_offsets": offsets, "foreground": fg}


def test_backend_recovers_noisy_scene_and_keeps_the_contract():
    truth, arrays = _scene()
    labels = segment_mutex_watershed(
        arrays, MutexWatershedConfig(stride=2, merge_size=5, min_size=5)
    )
    assert labels.dtype == np.uint32 and labels.shape == truth.shape
    ids = np.unique(labels)
    np.testing.assert_array_equal(ids, np.arange(ids.size))
    np.testing.assert_array_equal(labels > 0, truth > 0)
    assert same_partition(labels, truth)
    mask = np.zeros(truth.shape, bool)
    mask[:, :30] = True
    masked = segment_mutex_watershed(
        arrays, MutexWatershedConfig(stride=2, merge_size=5, min_size=5), mask=mask
    )
    assert not masked[~mask].any() and masked.max() >= 1
    again = segment_mutex_watershed(
        arrays, MutexWatershedConfig(stride=2, merge_size=5, min_size=5), mask=mask
    )
    np.testing.assert_array_equal(masked, again)


def test_backend_needs_the_offsets():
    _, arrays = _scene(seed=1)
    with pytest.raises(ValueError, match="offsets"):
        segment_mutex_watershed({"affinities": arrays["affinities"]})


def test_backend_merge_step_absorbs_fragments():
    truth, arrays = _scene(seed=2)
    # a 3x3 patch inside one object that the affinities cut off from its surroundings
    inner = np.argwhere(
        np.all(
            [
                np.roll(truth, (dy, dx), (0, 1)) == truth
                for dy in range(-3, 4)
                for dx in range(-3, 4)
            ],
            0,
        )
        & (truth > 0)
    )
    y, x = inner[len(inner) // 2]
    cut = truth.copy()
    cut[y - 1 : y + 2, x - 1 : x + 2] = truth.max() + 1
    affinities = _perfect_affinities(cut, arrays["affinity_offsets"]) * 0.8 + 0.1
    arrays = {**arrays, "affinities": affinities}
    split = segment_mutex_watershed(
        arrays, MutexWatershedConfig(stride=1, merge_size=0, min_size=0)
    )
    assert same_partition(split, cut)
    merged = segment_mutex_watershed(
        arrays, MutexWatershedConfig(stride=1, merge_size=9, min_size=0)
    )
    assert same_partition(merged, truth)
    assert merged.max() == split.max() - 1


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 7), (7, 1), (1, 1, 1), (1, 5, 1), (3, 1, 4), (2, 3, 3)]
)
def test_backend_tiny_shapes_and_long_offsets(shape):
    ndim = len(shape)
    unit = [tuple(-int(i == d) for i in range(ndim)) for d in range(ndim)]
    long = [tuple(-30 * int(i == d) for i in range(ndim)) for d in range(ndim)]
    offsets = np.array(unit + long)
    aff = np.full((2 * ndim, *shape), 0.9, np.float64)
    labels = segment_mutex_watershed(
        {"affinities": aff, "affinity_offsets": offsets},
        MutexWatershedConfig(merge_size=0, min_size=0),
    )
    assert labels.shape == shape and labels.dtype == np.uint32
    assert np.all(labels == 1)
    empty = segment_mutex_watershed(
        {"affinities": aff, "affinity_offsets": offsets, "foreground": np.zeros(shape)},
        MutexWatershedConfig(min_size=0),
    )
    assert empty.shape == shape and not empty.any()


def test_strides_count_from_the_image_origin_in_a_block():
    """A block of a larger image with its origin keeps exactly the whole image's edges."""
    from napari_instseg.core.assembly.mutex import _build_edges

    rng = np.random.default_rng(4)
    weights = rng.random((4, 40, 50)).astype(np.float32)
    offsets = np.array([[-1, 0], [0, -1], [-9, 0], [0, -9]])
    y0, x0 = 7, 13
    whole = _build_edges(weights, offsets, n_attractive=2, strides=5)
    block = _build_edges(weights[:, y0:, x0:], offsets, n_attractive=2, strides=5, origin=(y0, x0))

    def pairs(edges, shape, origin):
        u, v, _, rep = edges
        uy, ux = np.divmod(u[rep], shape[1])
        vy, vx = np.divmod(v[rep], shape[1])
        return set(zip(uy + origin[0], ux + origin[1], vy + origin[0], vx + origin[1], strict=True))

    inside = {
        e for e in pairs(whole, (40, 50), (0, 0)) if min(e[0], e[2]) >= y0 and min(e[1], e[3]) >= x0
    }
    assert pairs(block, (40 - y0, 50 - x0), (y0, x0)) == inside
    without = _build_edges(weights[:, y0:, x0:], offsets, n_attractive=2, strides=5)
    assert pairs(without, (40 - y0, 50 - x0), (y0, x0)) != inside
