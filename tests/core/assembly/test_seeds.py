"""Tests for the greedy seed-clustering back-end (EmbedSeg post-processing).

The fast implementation is checked pixel for pixel against a slow reference written out here,
which scores every candidate pixel for every seed exactly as the method describes.
"""

from __future__ import annotations

import math
import typing
from dataclasses import fields

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_instseg.core.assembly import get_backend, list_backends
from napari_instseg.core.assembly.seeds import SeedsConfig, cluster_seeds

SPACING = 1.0 / 1023


def naive_cluster_seeds(
    arrays,
    *,
    mask=None,
    fg_threshold=0.5,
    seed_threshold=0.9,
    min_size=10,
    min_unclustered_fraction=0.5,
    min_unclustered_sum=0,
):
    """Slow reference: every seed scores all candidate pixels."""
    seediness = np.asarray(arrays["seediness"])
    shape = seediness.shape
    ndim = len(shape)
    emb = np.asarray(arrays["embedding"]).reshape(ndim, -1).astype(np.float64)
    bw = np.asarray(arrays["bandwidth"]).astype(np.float64)
    bw = np.broadcast_to(bw, (ndim, *shape)).reshape(ndim, -1)
    score = seediness.reshape(-1)
    candidate = score > fg_threshold
    if mask is not None:
        candidate &= np.asarray(mask, bool).reshape(-1)
    labels = np.zeros(score.size, np.int64)
    if candidate.sum() <= min_unclustered_sum:
        return labels.reshape(shape).astype(np.uint32)
    unclustered = candidate.copy()
    next_id = 1
    while unclustered.sum() > min_unclustered_sum:
        seed = int(np.argmax(np.where(unclustered, score, -np.inf)))  # first of the maxima
        if score[seed] < seed_threshold:
            break
        c, b = emb[:, seed], bw[:, seed]
        with np.errstate(invalid="ignore", over="ignore"):
            dist = b[0] * (emb[0] - c[0]) ** 2
            for d in range(1, ndim):
                dist += b[d] * (emb[d] - c[d]) ** 2
        proposal = candidate & (dist < math.log(2.0))
        n_prop = int(proposal.sum())
        n_fresh = int((proposal & unclustered).sum())
        if n_prop >= min_size and n_prop > 0 and n_fresh / n_prop > min_unclustered_fraction:
            labels[proposal] = next_id
            next_id += 1
        unclustered &= ~proposal
        unclustered[seed] = False
    _, consecutive = np.unique(labels, return_inverse=True)
    if not (labels == 0).any():
        consecutive = consecutive + 1
    return consecutive.reshape(shape).astype(np.uint32)


def check_label_contract(labels, shape):
    assert isinstance(labels, np.ndarray)
    assert labels.dtype == np.uint32
    assert labels.shape == tuple(shape)
    ids = np.unique(labels)
    np.testing.assert_array_equal(ids[ids > 0], np.arange(1, int(labels.max(initial=0)) + 1))


def same_partition(a, b) -> bool:
    """Whether two label images hold the same objects (ids may differ)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    fg = a > 0
    pairs = np.unique(np.stack([a[fg], b[fg]]), axis=1)
    return pairs.shape[1] == np.unique(a[fg]).size == np.unique(b[fg]).size


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------


def random_prediction(shape, seed, *, n_centres=6, radius=4.0, isotropic=False):
    """Embeddings that clump around a few random centres, with stray pixels and noisy precisions.

    Seediness is quantised to create ties; bandwidths vary by pixel so that proposals overlap.
    """
    rng = np.random.default_rng(seed)
    ndim = len(shape)
    coords = np.indices(shape).reshape(ndim, -1).T.astype(np.float64)
    centres = rng.uniform(0, np.array(shape) - 1, size=(n_centres, ndim))
    nearest = np.argmin(((coords[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    emb = centres[nearest] + rng.normal(0, radius / 3, size=coords.shape)
    stray = rng.random(coords.shape[0]) < 0.15
    emb[stray] = coords[stray]
    embedding = (emb.T.reshape(ndim, *shape) * SPACING).astype(np.float32)
    channels = 1 if isotropic else ndim
    r = radius * rng.uniform(0.6, 1.6, size=(channels, *shape))
    bandwidth = (math.log(2.0) / (r * SPACING) ** 2).astype(np.float32)
    smooth = ndi.gaussian_filter(rng.random(shape), 1.0)
    smooth = (smooth - smooth.min()) / max(np.ptp(smooth), 1e-9)
    seediness = (np.round(smooth * 20) / 20).astype(np.float32)
    return {"embedding": embedding, "bandwidth": bandwidth, "seediness": seediness}


def disks_prediction(shape, centres, radii, *, fade=True):
    """Known-answer input: every object pixel points at its object's centroid."""
    ndim = len(shape)
    grid = np.indices(shape).astype(np.float64)
    truth = np.zeros(shape, np.uint32)
    for k, (centre, rad) in enumerate(zip(centres, radii, strict=True), start=1):
        dist = np.sqrt(sum((grid[d] - centre[d]) ** 2 for d in range(ndim)))
        truth[dist <= rad] = k
    embedding = grid.copy()
    for k in range(1, len(centres) + 1):
        obj = truth == k
        centroid = np.array([grid[d][obj].mean() for d in range(ndim)])
        for d in range(ndim):
            embedding[d][obj] = centroid[d]
    level = max(radii) + 1.0  # the Gaussian crosses 0.5 about one object radius away
    bandwidth = np.full((ndim, *shape), math.log(2.0) / (level * SPACING) ** 2)
    inside = ndi.distance_transform_edt(truth > 0)
    seediness = np.minimum(1.0, 0.4 + 0.3 * inside) if fade else (truth > 0) * 1.0
    seediness = np.where(truth > 0, seediness, 0.0)
    arrays = {
        "embedding": (embedding * SPACING).astype(np.float32),
        "bandwidth": bandwidth.astype(np.float32),
        "seediness": seediness.astype(np.float32),
    }
    return arrays, truth


DISKS_2D = dict(
    shape=(80, 90),
    centres=[(15, 15), (15, 60), (45, 30), (60, 70), (68, 12)],
    radii=[8, 6, 10, 7, 5],
)


# ---------------------------------------------------------------------------
# equality with the slow reference
# ---------------------------------------------------------------------------

KNOBS = [
    {},
    {"fg_threshold": 0.3, "seed_threshold": 0.6, "min_size": 1},
    {"fg_threshold": 0.2, "seed_threshold": 0.5, "min_size": 5, "min_unclustered_fraction": 0.8},
    {"fg_threshold": 0.4, "seed_threshold": 0.4, "min_size": 0, "min_unclustered_fraction": 0.0},
    {"fg_threshold": 0.25, "seed_threshold": 0.7, "min_size": 20, "min_unclustered_sum": 40},
]


@pytest.mark.parametrize("knobs", KNOBS)
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("shape", [(37, 41), (9, 14, 13)])
def test_matches_naive_reference_on_random_inputs(shape, use_mask, knobs):
    for seed in range(2):
        arrays = random_prediction(shape, seed)
        mask = np.random.default_rng(seed + 7).random(shape) > 0.25 if use_mask else None
        fast = cluster_seeds(arrays, SeedsConfig(**knobs), mask=mask)
        slow = naive_cluster_seeds(arrays, mask=mask, **knobs)
        check_label_contract(fast, shape)
        np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("seed", range(4))
def test_matches_naive_reference_on_wide_and_uneven_bandwidths(seed):
    """Tiny, huge and per-axis very different search boxes; an isotropic bandwidth channel."""
    shape = (30, 33)
    arrays = random_prediction(shape, seed, n_centres=10, radius=2.0 + 6 * seed, isotropic=seed % 2)
    rng = np.random.default_rng(seed)
    arrays["bandwidth"] = (arrays["bandwidth"] * rng.choice([1e-3, 1.0, 50.0], size=shape)).astype(
        np.float32
    )
    knobs = {"fg_threshold": 0.2, "seed_threshold": 0.3, "min_size": 2}
    np.testing.assert_array_equal(
        cluster_seeds(arrays, SeedsConfig(**knobs)), naive_cluster_seeds(arrays, **knobs)
    )


def test_matches_naive_reference_on_structured_input_with_noise():
    arrays, _ = disks_prediction(**DISKS_2D)
    rng = np.random.default_rng(3)
    arrays["embedding"] += rng.normal(0, 2 * SPACING, arrays["embedding"].shape).astype(np.float32)
    arrays["seediness"] = arrays["seediness"].astype(np.float64)  # the non-float32 sort path
    arrays["seediness"] = np.clip(
        arrays["seediness"] + rng.normal(0, 0.1, arrays["seediness"].shape), 0, 1
    )
    for knobs in KNOBS:
        np.testing.assert_array_equal(
            cluster_seeds(arrays, SeedsConfig(**knobs)), naive_cluster_seeds(arrays, **knobs)
        )


def test_non_finite_values_are_handled_like_the_reference():
    arrays = random_prediction((25, 27), 5)
    arrays["embedding"][0, 3:6, 3:9] = np.nan
    arrays["embedding"][1, 10, :] = np.inf
    arrays["bandwidth"][:, 20:22, 5:15] = 0.0
    knobs = {"fg_threshold": 0.2, "seed_threshold": 0.3, "min_size": 1}
    fast = cluster_seeds(arrays, SeedsConfig(**knobs))
    check_label_contract(fast, (25, 27))
    np.testing.assert_array_equal(fast, naive_cluster_seeds(arrays, **knobs))


# ---------------------------------------------------------------------------
# known answers and knobs
# ---------------------------------------------------------------------------


def test_recovers_separated_disks_exactly():
    arrays, truth = disks_prediction(**DISKS_2D)
    labels = cluster_seeds(arrays)
    check_label_contract(labels, truth.shape)
    assert labels.max() == truth.max() == 5
    assert same_partition(labels, truth)


def test_recovers_separated_balls_in_3d():
    arrays, truth = disks_prediction(
        (20, 30, 30), centres=[(6, 8, 8), (12, 20, 22), (6, 22, 7)], radii=[4, 5, 3]
    )
    labels = cluster_seeds(arrays)
    check_label_contract(labels, truth.shape)
    assert labels.max() == 3
    assert same_partition(labels, truth)


def test_fg_threshold_changes_the_result():
    arrays, truth = disks_prediction(**DISKS_2D)
    loose = cluster_seeds(arrays, SeedsConfig(fg_threshold=0.5))
    strict = cluster_seeds(arrays, SeedsConfig(fg_threshold=0.75))  # drops the object borders (0.7)
    assert not np.array_equal(loose > 0, strict > 0)
    np.testing.assert_array_equal(strict > 0, arrays["seediness"] > 0.75)
    assert strict.max() == 5
    assert same_partition(strict, np.where(strict > 0, truth, 0))


def test_min_size_removes_small_proposals():
    arrays, truth = disks_prediction(**DISKS_2D)
    areas = np.bincount(truth.ravel())[1:]
    smallest = int(np.argmin(areas)) + 1
    labels = cluster_seeds(arrays, SeedsConfig(min_size=int(areas.min()) + 1))
    assert labels.max() == 4
    assert not labels[truth == smallest].any()
    assert same_partition(labels, np.where(truth == smallest, 0, truth))


def test_seed_threshold_above_every_seediness_gives_nothing():
    arrays, _ = disks_prediction(**DISKS_2D, fade=False)
    arrays["seediness"] *= 0.8
    assert not cluster_seeds(arrays, SeedsConfig(seed_threshold=0.9)).any()
    assert cluster_seeds(arrays, SeedsConfig(seed_threshold=0.75)).max() == 5


def test_min_unclustered_sum_stops_early():
    arrays, truth = disks_prediction(**DISKS_2D)
    n_fg = int((truth > 0).sum())
    assert not cluster_seeds(arrays, SeedsConfig(min_unclustered_sum=n_fg)).any()
    partial = cluster_seeds(arrays, SeedsConfig(min_unclustered_sum=n_fg - 1))
    assert partial.max() == 1


def test_mask_restricts_candidates():
    arrays, truth = disks_prediction(**DISKS_2D)
    mask = np.ones(truth.shape, bool)
    mask[:, :25] = False  # removes two disks and cuts one
    labels = cluster_seeds(arrays, mask=mask)
    assert not labels[~mask].any()
    assert labels.max() == 3
    np.testing.assert_array_equal(labels > 0, (truth > 0) & mask)


def test_deterministic_and_rng_independent():
    arrays = random_prediction((30, 30), 11)
    knobs = {"fg_threshold": 0.3, "seed_threshold": 0.5, "min_size": 3}
    a = cluster_seeds(arrays, SeedsConfig(**knobs), rng=np.random.default_rng(0))
    b = cluster_seeds(arrays, SeedsConfig(**knobs), rng=np.random.default_rng(99))
    np.testing.assert_array_equal(a, b)
    assert a.max() > 1


@pytest.mark.parametrize("shape", [(12, 12), (4, 6, 5), (0, 7)])
def test_empty_input_gives_zeros(shape):
    ndim = len(shape)
    arrays = {
        "embedding": np.zeros((ndim, *shape), np.float32),
        "bandwidth": np.ones((ndim, *shape), np.float32),
        "seediness": np.zeros(shape, np.float32),
    }
    labels = cluster_seeds(arrays)
    check_label_contract(labels, shape)
    assert not labels.any()


def test_rejects_mismatched_shapes():
    arrays = random_prediction((10, 12), 0)
    with pytest.raises(ValueError, match="embedding"):
        cluster_seeds({**arrays, "embedding": arrays["embedding"][:1]})
    with pytest.raises(ValueError, match="bandwidth"):
        cluster_seeds({**arrays, "bandwidth": arrays["bandwidth"][:, :5]})
    with pytest.raises(ValueError, match="mask"):
        cluster_seeds(arrays, mask=np.ones((3, 3), bool))


# ---------------------------------------------------------------------------
# registry and config
# ---------------------------------------------------------------------------


def test_registered_backend_matches_direct_call():
    assert "seeds" in list_backends()
    backend = get_backend("seeds")
    assert backend.fn is cluster_seeds
    assert backend.config_type is SeedsConfig
    assert set(backend.requires) == {"embedding", "bandwidth", "seediness"}
    arrays = random_prediction((20, 22), 2)
    config = SeedsConfig(fg_threshold=0.3, seed_threshold=0.5, min_size=2)
    np.testing.assert_array_equal(
        backend(arrays, config=config),
        cluster_seeds(arrays, SeedsConfig(fg_threshold=0.3, seed_threshold=0.5, min_size=2)),
    )


def test_config_knobs_carry_ranges():
    hints = typing.get_type_hints(SeedsConfig, include_extras=True)
    defaults = SeedsConfig()
    for f in fields(SeedsConfig):
        meta = hints[f.name].__metadata__[0]
        assert {"min", "max", "tooltip"} <= set(meta)
        assert meta["min"] <= getattr(defaults, f.name) <= meta["max"]
    with pytest.raises(AttributeError):
        defaults.min_size = 3  # frozen


# ---------------------------------------------------------------------------
# sorting helpers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bound", [300, 2**20, 2**33])
def test_radix_argsort_is_a_stable_argsort(bound):
    from napari_instseg.core.assembly.seeds import _argsort_small_ints

    values = np.random.default_rng(bound % 97).integers(0, min(bound, 2**40), 5000)
    np.testing.assert_array_equal(
        _argsort_small_ints(values, bound), np.argsort(values, kind="stable")
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_descending_order_matches_a_stable_sort_with_ties_and_signs(dtype):
    from napari_instseg.core.assembly.seeds import _descending_order

    rng = np.random.default_rng(4)
    values = np.round(rng.normal(0, 2, 3000), 1).astype(dtype)
    values[::7] = 0.0
    values[3::11] = -0.0
    values[5::13] = np.inf
    values[6::17] = -np.inf
    np.testing.assert_array_equal(_descending_order(values), np.argsort(-values, kind="stable"))
