"""Patch consensus (PatchPerPix assembly): known answers, brute-force voting, the cache."""

import numpy as np
import pytest
from skimage.draw import disk

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.assembly import patches as pc
from napari_instseg.core.assembly.patches import (
    PatchConsensusConfig,
    pair_offsets,
    patch_offsets,
    patches_from_labels,
    segment_patch_consensus,
)
from napari_instseg.core.metrics import average_precision_dsb


def same_partition(a, b):
    """The two label images split the pixels the same way (ids may differ)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == np.unique(a).size == np.unique(b).size


def arrays_for(labels, patch_size, *, noise=0.0, seed=0, low=0.05, high=0.95):
    """What a network would predict for ``labels``: exact patches (softened, maybe noisy)."""
    shape = (patch_size,) * labels.ndim
    pixels = np.flatnonzero(labels.ravel() > 0)
    exact = patches_from_labels(labels, shape, pixels) == 255
    value = np.where(exact, high, low)
    if noise:
        value = np.clip(value + np.random.default_rng(seed).normal(0, noise, value.shape), 0, 1)
    return {
        "foreground": (labels > 0).astype(np.float32),
        "patches": np.round(value * 255).astype(np.uint8),
        "patch_pixels": pixels,
        "patch_shape": np.asarray(shape),
    }


def disks(shape=(160, 160), seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    k = 1
    for y in range(18, shape[0] - 10, 38):
        for x in range(18, shape[1] - 10, 38):
            centre = (y + rng.integers(-4, 5), x + rng.integers(-4, 5))
            rr, cc = disk(centre, rng.integers(8, 20), shape=shape)
            labels[rr, cc] = k
            k += 1
    return labels


def tiles(shape, step):
    """Touching boxes that tile the image: every boundary is between two objects."""
    grid = np.indices(shape) // step
    ids = np.zeros(shape, np.int64)
    for axis in range(len(shape)):
        ids = ids * (shape[axis] // step + 1) + grid[axis]
    return np.unique(ids, return_inverse=True)[1].reshape(shape) + 1


@pytest.mark.parametrize("mws", [True, False])
def test_exact_patches_give_back_the_objects(mws):
    for labels in (disks(), tiles((96, 96), 24)):
        out = segment_patch_consensus(
            arrays_for(labels, 25), PatchConsensusConfig(mws=mws, min_size=0)
        )
        assert same_partition(out, labels)


def test_exact_patches_give_back_touching_objects_in_3d():
    labels = tiles((12, 24, 24), 6)
    labels[:, :, 18:] = 0  # some background too
    out = segment_patch_consensus(arrays_for(labels, 7), PatchConsensusConfig(min_size=0))
    assert same_partition(out, labels)


def test_objects_larger_than_the_patch_stay_whole():
    labels = np.zeros((90, 120), np.int32)
    labels[10:80, 5:60] = 1
    labels[10:80, 60:115] = 2  # two touching 70x55 boxes, patches are 9x9
    out = segment_patch_consensus(arrays_for(labels, 9), PatchConsensusConfig(min_size=0))
    assert same_partition(out, labels)


def test_noisy_patches_are_outvoted():
    labels = disks()
    out = segment_patch_consensus(
        arrays_for(labels, 25, noise=0.1, seed=3), PatchConsensusConfig(min_size=0)
    )
    assert average_precision_dsb(labels, out, iou_threshold=0.8) == 1.0


def test_consensus_matches_brute_force_voting():
    rng = np.random.default_rng(0)
    shape, ext, th = (7, 9), (5, 5), 0.55
    fg = rng.random(shape) > 0.25
    pixels = np.flatnonzero(fg)
    patches = rng.integers(0, 256, (pixels.size, 25)).astype(np.uint8)
    arrays = {
        "foreground": fg.astype(np.float32),
        "patches": patches,
        "patch_pixels": pixels,
        "patch_shape": np.asarray(ext),
    }
    voting = pc._vote_now(arrays, None, th, 0.5)
    offsets = pair_offsets(ext)[:, 1:]
    within = {tuple(o): i for i, o in enumerate(patch_offsets(ext))}
    row = {int(p): i for i, p in enumerate(pixels)}
    for k, off in enumerate(offsets):
        for p in map(tuple, np.argwhere(fg)):
            q = (p[0] + off[0], p[1] + off[1])
            if not (0 <= q[0] < shape[0] and 0 <= q[1] < shape[1]) or not fg[q]:
                continue
            total = count = 0.0
            for c in map(tuple, np.argwhere(fg)):
                up, uq = (p[0] - c[0], p[1] - c[1]), (q[0] - c[0], q[1] - c[1])
                if up not in within or uq not in within:
                    continue
                patch = patches[row[np.ravel_multi_index(c, shape)]] / 255.0
                a, b = patch[within[up]], patch[within[uq]]
                for x, y, n in ((a, b, 1), (b, a, 1)):  # both orders of the pair
                    if x > th and y > th:
                        total, count = total + (x * y - th**2) / (1 - th**2), count + n
                    elif x > th and y < th:
                        total, count = total - (x * (1 - y) - th**2) / (1 - th**2), count + n
            pi = np.ravel_multi_index(p, shape)
            assert voting.valid[pi, k] == (count > 0)
            if count:
                assert voting.consensus[pi, k] == pytest.approx(total / count, abs=1e-5)


def test_cheap_knobs_reuse_the_voting_and_agree_with_a_fresh_run():
    arrays = arrays_for(disks(), 25, noise=0.15, seed=1)
    pc._CACHE.clear()
    first = {}
    segment_patch_consensus(arrays, PatchConsensusConfig(fc_threshold=0.6), timings=first)
    assert first["cached_voting"] is False
    for knobs in ({"fc_threshold": 0.8}, {"mws": False}, {"merge_size": 40}, {"min_size": 50}):
        t = {}
        cached = segment_patch_consensus(arrays, PatchConsensusConfig(**knobs), timings=t)
        assert t["cached_voting"] is True
        pc._CACHE.clear()
        np.testing.assert_array_equal(
            cached, segment_patch_consensus(arrays, PatchConsensusConfig(**knobs))
        )
    t = {}
    segment_patch_consensus(arrays, PatchConsensusConfig(patch_threshold=0.7), timings=t)
    assert t["cached_voting"] is False
    assert {k[1] for k in pc._CACHE[id(arrays["patches"])]} == {0.6, 0.7}  # voted again


def test_votes_live_as_long_as_their_patches():
    arrays = arrays_for(tiles((32, 32), 8), 5)
    key = id(arrays["patches"])
    segment_patch_consensus(arrays)
    assert key in pc._CACHE
    del arrays
    assert key not in pc._CACHE


def test_the_patch_graph_split_over_threads_gives_the_same_labels(monkeypatch):
    arrays = arrays_for(tiles((96, 96), 6), 7, noise=0.15, seed=2)  # 256 touching objects
    timings = {}
    monkeypatch.setattr(pc.numba, "get_num_threads", lambda: 1)
    one = segment_patch_consensus(arrays, PatchConsensusConfig(min_size=0), timings=timings)
    assert timings["patches_chosen"] >= 4 * 64  # enough patches for four runs
    monkeypatch.setattr(pc.numba, "get_num_threads", lambda: 4)
    np.testing.assert_array_equal(
        segment_patch_consensus(arrays, PatchConsensusConfig(min_size=0)), one
    )


def test_min_size_and_mask():
    labels = disks()
    arrays = arrays_for(labels, 25)
    sizes = np.bincount(labels.ravel())[1:]
    out = segment_patch_consensus(arrays, PatchConsensusConfig(min_size=int(np.median(sizes))))
    assert 0 < out.max() < labels.max()
    mask = np.zeros(labels.shape, bool)
    mask[:, :80] = True
    out = segment_patch_consensus(arrays, PatchConsensusConfig(min_size=0), mask=mask)
    assert not out[~mask].any() and out[mask & (labels > 0)].all()


def test_merge_size_joins_a_fragment_to_its_neighbour():
    labels = np.zeros((40, 60), np.int32)
    labels[5:35, 5:30] = 1
    labels[5:35, 30:55] = 2
    arrays = arrays_for(labels, 9)
    rows = np.isin(arrays["patch_pixels"], np.flatnonzero((labels == 2).ravel()))
    split = labels.copy()
    split[5:35, 50:55] = 3  # the network says the right object's edge is another object
    arrays["patches"][rows] = patches_from_labels(split, (9, 9), arrays["patch_pixels"][rows])
    assert segment_patch_consensus(arrays, PatchConsensusConfig(min_size=0)).max() == 3
    merged = segment_patch_consensus(arrays, PatchConsensusConfig(merge_size=200, min_size=0))
    assert same_partition(merged, labels)


def test_bad_inputs_get_clear_messages():
    arrays = arrays_for(disks(), 5)
    with pytest.raises(ValueError, match="2D patches for a 3D image"):
        segment_patch_consensus({**arrays, "foreground": np.zeros((2, 3, 4), np.float32)})
    with pytest.raises(ValueError, match="patch_threshold"):
        segment_patch_consensus(arrays, PatchConsensusConfig(patch_threshold=1.0))


def test_registered_with_its_knobs():
    backend = get_backend("patch_consensus")
    assert {"patch_threshold", "fc_threshold", "mws", "min_size"} <= set(backend.knob_names())


def test_pair_offsets_fit_in_the_patch():
    for shape in ((25, 25), (9, 9, 9), (3, 3)):
        offs = pair_offsets(shape)
        assert len({tuple(o) for o in offs}) == len(offs)
        assert np.all(np.abs(offs[:, -len(shape) :]) <= np.asarray(shape) - 1)
        assert np.all(offs[:, -len(shape) :].max(axis=0) == np.asarray(shape) - 1)
    assert len(pair_offsets((25, 25))) == 24 and len(pair_offsets((9, 9, 9))) == 52
