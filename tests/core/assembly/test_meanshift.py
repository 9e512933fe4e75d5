"""Our mean-shift against scikit-learn's on the same points, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import MeanShift
from sklearn.metrics import adjusted_rand_score

from napari_instseg.core.assembly.meanshift import mean_shift


def _blobs(rng, n_clusters=12, dim=16, spread=0.08, outliers=20):
    centres = rng.normal(0, 3, (n_clusters, dim))
    sizes = rng.integers(20, 300, n_clusters)
    parts = [c + rng.normal(0, spread, (s, dim)) for c, s in zip(centres, sizes, strict=True)]
    parts.append(rng.normal(0, 3, (outliers, dim)))
    return np.concatenate(parts).astype(np.float32), np.repeat(np.arange(n_clusters), sizes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_seeding_gives_sklearns_partition(seed):
    x, _ = _blobs(np.random.default_rng(seed))
    ours, modes = mean_shift(x, 0.5, rng=np.random.default_rng(0))
    ref = MeanShift(bandwidth=0.5, bin_seeding=True).fit(x)
    assert adjusted_rand_score(ref.labels_, ours) > 0.99
    assert len(modes) == len(ref.cluster_centers_)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_centroid_seeding_finds_every_blob(seed):
    # in 16-D a grid cell's centre is often out of reach of all its points, so bin seeding
    # (ours with seeding="grid", and scikit-learn's) misses some blobs; centroids cannot
    x, truth = _blobs(np.random.default_rng(seed))
    ours, _ = mean_shift(x, 0.5, seeding="centroid", rng=np.random.default_rng(0))
    assert adjusted_rand_score(truth, ours[: truth.size]) == pytest.approx(1.0)


def test_seeding_again_finds_what_the_first_seeds_missed():
    # many small clusters: 200 seeds miss most of them, seeding again finds them
    x, truth = _blobs(np.random.default_rng(3), n_clusters=60, outliers=0)
    ours, modes = mean_shift(
        x, 0.5, seeding="centroid", max_seed_points=200, rng=np.random.default_rng(0)
    )
    assert len(modes) == 60
    assert adjusted_rand_score(truth, ours) == pytest.approx(1.0)


def test_gaussian_kernel_finds_the_blobs():
    x, truth = _blobs(np.random.default_rng(4), outliers=0)
    ours, _ = mean_shift(x, 0.5, kernel="gaussian", seeding="centroid")
    assert adjusted_rand_score(truth, ours) == pytest.approx(1.0)


def test_labels_are_dense_and_deterministic():
    x, _ = _blobs(np.random.default_rng(5))
    a, modes = mean_shift(x, 0.5, rng=np.random.default_rng(7))
    b, _ = mean_shift(x, 0.5, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == set(range(len(modes)))


def test_edge_cases():
    labels, modes = mean_shift(np.zeros((0, 4), np.float32), 0.5)
    assert labels.shape == (0,) and modes.shape == (0, 4)
    labels, modes = mean_shift(np.ones((1, 3), np.float32), 0.5)
    np.testing.assert_array_equal(labels, [0])
    with pytest.raises(ValueError, match="bandwidth"):
        mean_shift(np.ones((3, 2), np.float32), 0.0)
    with pytest.raises(ValueError, match="kernel"):
        mean_shift(np.ones((3, 2), np.float32), 0.5, kernel="epanechnikov")
    with pytest.raises(ValueError, match="seeding"):
        mean_shift(np.ones((3, 2), np.float32), 0.5, seeding="random")
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        mean_shift(np.ones(5, np.float32), 0.5)


def test_sample_and_all_points_agree_on_separated_clusters():
    x, truth = _blobs(np.random.default_rng(6), n_clusters=20, outliers=0)
    sampled, _ = mean_shift(x, 0.5, seeding="centroid", sample_size=800)
    exact, _ = mean_shift(x, 0.5, seeding="centroid", sample_size=0)
    assert x.shape[0] > 2000
    assert adjusted_rand_score(exact, sampled) == pytest.approx(1.0)
    assert adjusted_rand_score(truth, exact) == pytest.approx(1.0)


# -- the fast paths against dense computations -------------------------------------------


def _diffuse(rng, n=3000, dim=16):
    """An embedding like a network's: touching clusters spread over three leading axes, the
    other coordinates small."""
    centres = rng.normal(0, 1.5, (8, 3))
    parts = [c + rng.normal(0, 0.6, (n // 8, 3)) for c in centres]
    lead = np.concatenate(parts)
    rest = rng.normal(0, 0.15, (lead.shape[0], dim - 3))
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))  # not along the coordinate axes
    return (np.concatenate([lead, rest], axis=1) @ q.T).astype(np.float32)


def _dense_sums(seeds, x, bandwidth):
    d2 = ((seeds[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    inside = d2 <= bandwidth**2
    return np.concatenate([inside @ x.astype(np.float64), inside.sum(1, keepdims=True)], axis=1)


@pytest.mark.parametrize(("dim", "bandwidth"), [(16, 0.8), (16, 0.3), (3, 0.5), (1, 0.2)])
def test_first_step_of_grid_seeds_is_the_dense_one(dim, bandwidth):
    from napari_instseg.core.assembly.meanshift import _first_step, _grid_cells

    x = _diffuse(np.random.default_rng(dim), n=1600, dim=max(dim, 3))[:, :dim].copy()
    cells, _, _, sizes = _grid_cells(x, bandwidth, 1)
    fast = _first_step(cells, x, bandwidth)
    dense = _dense_sums(cells * np.float32(bandwidth), x, bandwidth)
    np.testing.assert_array_equal(fast[:, -1], dense[:, -1])
    np.testing.assert_allclose(fast[:, :-1], dense[:, :-1], rtol=1e-4, atol=1e-3)
    assert (dense[:, -1] != sizes).any()  # centres reached from other cells, or not at all
    if dim > 4:  # a cell's centre can be out of reach of all its points
        assert 0 < (dense[:, -1] > 0).sum() < len(cells)


@pytest.mark.parametrize(("dim", "bandwidth"), [(16, 0.8), (16, 2.5), (2, 0.4), (1, 0.3)])
def test_grid_ball_sums_are_the_dense_ones(dim, bandwidth):
    from napari_instseg.core.assembly.meanshift import _Axes, _Grid

    rng = np.random.default_rng(dim)
    x = _diffuse(rng, n=2000, dim=max(dim, 3))[:, :dim].copy()
    seeds = np.concatenate([x[rng.choice(len(x), 60)], rng.normal(0, 6, (20, dim))])
    seeds = seeds.astype(np.float32)  # points and seeds far from all of them
    axes = _Axes(x)
    fast = _Grid(axes, bandwidth).sums(axes.rotate(seeds))
    dense = _dense_sums(seeds, x, bandwidth)
    np.testing.assert_array_equal(fast[:, -1], dense[:, -1])
    inside = dense[:, -1] > 0
    means = axes.unrotate((fast[inside, :-1] / fast[inside, -1:]).astype(np.float32))
    np.testing.assert_allclose(means, dense[inside, :-1] / dense[inside, -1:], atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_shared_paths_and_grid_give_the_exact_climbs_partition(seed):
    # the default (grid kernel, seeds that meet a path follow it) against every seed
    # climbing on its own, with dense distance matrices (the exact climb, as scikit-learn)
    from napari_instseg.core.assembly.meanshift import (
        _climb,
        _Dense,
        _first_step,
        _grid_cells,
        _suppress,
        nearest,
    )

    x = _diffuse(np.random.default_rng(seed))
    bandwidth = 0.7
    fast, modes = mean_shift(x, bandwidth)
    alone, _ = mean_shift(x, bandwidth, merge=0.0)
    dense = _Dense(torch.as_tensor(x), bandwidth, "flat")
    cells = _grid_cells(x, bandwidth, 1)[0]
    seeds = cells.astype(np.float32) * np.float32(bandwidth)
    first = _first_step(cells, x, bandwidth)
    exact_modes = _suppress(dense, _climb(dense, seeds, 1e-3 * bandwidth, 300, 0.0, first), 0.7)
    exact = nearest(torch.as_tensor(x), torch.as_tensor(exact_modes))[0].numpy()
    assert len(modes) == len(exact_modes) > 3
    assert adjusted_rand_score(exact, fast) > 0.999
    assert adjusted_rand_score(exact, alone) > 0.999
