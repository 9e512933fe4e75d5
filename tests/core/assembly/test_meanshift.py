"""Our mean-shift against scikit-learn's on the same points, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
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
