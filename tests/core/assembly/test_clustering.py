"""Embedding clustering back-ends on embeddings with known answers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.assembly.clustering import (
    ConsistencyConfig,
    HdbscanConfig,
    MeanShiftConfig,
    cluster_consistency,
    cluster_hdbscan,
    cluster_meanshift,
    merge_touching,
    object_agreement,
)


def _scene(rng, n_side=6, size=8, dim=8, noise=0.05):
    """A grid of square objects, each a tight blob at its own random point of embedding space."""
    shape = (n_side * size + 4, n_side * size + 4)
    truth = np.zeros(shape, np.uint32)
    emb = rng.normal(0, noise, (dim, *shape)).astype(np.float32)
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            k += 1
            sl = (slice(2 + i * size, 1 + (i + 1) * size), slice(2 + j * size, 1 + (j + 1) * size))
            truth[sl] = k
            emb[(slice(None), *sl)] += rng.normal(0, 3, dim)[:, None, None].astype(np.float32)
    fg = (truth > 0).astype(np.float32)
    return truth, {"pixel_embedding": emb, "pixel_embedding_g": emb.copy(), "foreground": fg}


def _same_partition(a, b):
    pairs = {(x, y) for x, y in zip(a.ravel(), b.ravel(), strict=True)}
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize(
    ("fn", "config"),
    [
        (cluster_meanshift, MeanShiftConfig(min_size=1)),
        (cluster_hdbscan, HdbscanConfig(min_size=1)),
        (cluster_consistency, ConsistencyConfig(min_size=1)),
    ],
)
def test_recovers_the_objects(fn, config):
    truth, arrays = _scene(np.random.default_rng(0))
    labels = fn(arrays, config, rng=np.random.default_rng(0))
    assert _same_partition(labels, truth)


def test_hdbscan_subsample_scales_min_cluster_size():
    truth, arrays = _scene(np.random.default_rng(1), n_side=8)
    # 3136 object pixels, 2000 given to HDBSCAN; min_cluster_size 30 is in full-image pixels
    labels = cluster_hdbscan(
        arrays, HdbscanConfig(max_points=2000, min_cluster_size=30, min_size=1)
    )
    assert _same_partition(labels, truth)
    # no cluster can be as large as the whole foreground
    assert not cluster_hdbscan(arrays, HdbscanConfig(max_points=2000, min_cluster_size=5000)).any()


def test_foreground_threshold_and_mask():
    truth, arrays = _scene(np.random.default_rng(2))
    arrays["foreground"] = np.where(truth % 2 == 1, 0.9, 0.3).astype(np.float32)
    labels = cluster_meanshift(arrays, MeanShiftConfig(min_size=1))
    assert labels.max() == len(np.unique(truth[truth % 2 == 1]))
    mask = np.zeros(truth.shape, bool)
    mask[: truth.shape[0] // 2] = True
    assert not cluster_meanshift(arrays, MeanShiftConfig(min_size=1), mask=mask)[~mask].any()
    without_fg = {"pixel_embedding": arrays["pixel_embedding"]}
    # without a foreground every pixel is clustered: background is one more cluster
    assert cluster_meanshift(without_fg, MeanShiftConfig(min_size=1)).max() == truth.max() + 1


def test_consistency_drops_what_the_other_view_splits():
    truth, arrays = _scene(np.random.default_rng(3), n_side=2, size=16)
    g = arrays["pixel_embedding_g"]
    g[0][(truth == 1) & (np.arange(truth.shape[1]) < 10)[None, :]] += 5.0  # g halves object 1
    labels = cluster_consistency(
        arrays, ConsistencyConfig(min_size=1), rng=np.random.default_rng(0)
    )
    assert not labels[truth == 1].any()
    assert _same_partition(labels[truth > 1], truth[truth > 1])
    kept = cluster_consistency(arrays, ConsistencyConfig(min_size=1, iou_threshold=0.3))
    assert kept[truth == 1].all()


def test_backends_registered_with_their_knobs():
    assert get_backend("meanshift").knob_names() == (
        "bandwidth",
        "fg_threshold",
        "min_size",
        "split_disconnected",
        "gaussian",
        "merge_distance",
    )
    for name in ("meanshift", "hdbscan", "consistency"):
        assert "merge_distance" in get_backend(name).knob_names()
    assert "pixel_embedding_g" in get_backend("consistency").requires


def test_split_disconnected_separates_far_objects_embedded_alike():
    truth, arrays = _scene(np.random.default_rng(5), n_side=2, size=10)
    emb = arrays["pixel_embedding"]
    emb[:, truth == 4] = emb[:, truth == 1].mean(axis=1, keepdims=True)  # 1 and 4 look alike
    merged = cluster_meanshift(arrays, MeanShiftConfig(min_size=1, split_disconnected=False))
    assert merged.max() == 3
    assert _same_partition(cluster_meanshift(arrays, MeanShiftConfig(min_size=1)), truth)


def test_consistency_with_fewer_anchors_than_asked_on_large_objects(monkeypatch):
    import napari_instseg.core.assembly.clustering as clustering

    truth, arrays = _scene(np.random.default_rng(7), n_side=4, size=12)
    full = cluster_consistency(arrays, ConsistencyConfig(min_size=1), rng=np.random.default_rng(0))
    monkeypatch.setattr(clustering, "ANCHOR_BUDGET", 50)  # the 8-anchor floor on every object
    few = cluster_consistency(arrays, ConsistencyConfig(min_size=1), rng=np.random.default_rng(0))
    assert _same_partition(full, truth)
    assert _same_partition(few, truth)


def test_consistency_keeps_what_g_reproduces_in_other_coordinates():
    # g is f rotated and shifted (a momentum twin that lags f can differ by such a map): the
    # check compares regions within g only, so every object stays
    truth, arrays = _scene(np.random.default_rng(9), n_side=3, size=12)
    f = arrays["pixel_embedding"]
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(f.shape[0], f.shape[0])))
    g = np.tensordot(q.astype(np.float32), f, axes=1) + 7.0
    arrays["pixel_embedding_g"] = g.astype(np.float32)
    labels = cluster_consistency(arrays, ConsistencyConfig(min_size=1))
    assert _same_partition(labels, truth)


def test_consistency_keeps_distant_objects_embedded_alike():
    # f and g both give objects 1 and 4 (far apart) one embedding; each piece is judged in
    # its own neighbourhood, so neither is dropped (SPOCO's whole-image masks would mix them)
    truth, arrays = _scene(np.random.default_rng(5), n_side=2, size=10)
    for key in ("pixel_embedding", "pixel_embedding_g"):
        emb = arrays[key]
        emb[:, truth == 4] = emb[:, truth == 1].mean(axis=1, keepdims=True)
    labels = cluster_consistency(arrays, ConsistencyConfig(min_size=1))
    assert _same_partition(labels, truth)


def test_consistency_drops_a_piece_that_g_scatters():
    truth, arrays = _scene(np.random.default_rng(11), n_side=3, size=12)
    g = arrays["pixel_embedding_g"]
    noise = np.random.default_rng(2).normal(0, 3, (g.shape[0], int((truth == 5).sum())))
    g[:, truth == 5] = noise.astype(np.float32)  # g has no object 5, only noise
    labels = cluster_consistency(arrays, ConsistencyConfig(min_size=1))
    assert not labels[truth == 5].any()
    assert _same_partition(labels[truth != 5], truth[truth != 5])


def test_object_agreement_on_a_known_split():
    lab = np.zeros((4, 12), np.uint32)
    lab[:, :8], lab[:, 9:] = 1, 2
    g = np.zeros((2, 4, 12), np.float32)
    g[0][:, :2] = 3.0  # g cuts object 1 into 8 and 24 pixels
    g[1][:, 9:] = 9.0
    agree = object_agreement(lab, g, lab > 0, 0.5, 1000, np.random.default_rng(0), min_size=0)
    # anchors in the larger part (3 in 4 of them) see IoU 24/32; the median is 0.75
    assert agree[1] == pytest.approx(0.75)
    assert agree[2] == 1.0


def test_non_finite_embedding_is_refused():
    _, arrays = _scene(np.random.default_rng(8), n_side=2)
    arrays["pixel_embedding"][0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cluster_meanshift(arrays)


def _fragmented_pair(rng, dim=8):
    """Two touching objects; the left one's halves sit 1.0 apart in embedding space (two
    modes at bandwidth 0.5), the right one 5 away from both."""
    truth = np.zeros((20, 40), np.uint32)
    truth[2:18, 2:20], truth[2:18, 20:38] = 1, 2
    emb = rng.normal(0, 0.02, (dim, *truth.shape)).astype(np.float32)
    emb[0][truth == 2] += 5.0
    emb[1][(truth == 1) & (np.arange(40) < 11)[None, :]] += 1.0
    return truth, {"pixel_embedding": emb, "foreground": (truth > 0).astype(np.float32)}


def test_merge_distance_joins_the_fragments_of_one_object_only():
    truth, arrays = _fragmented_pair(np.random.default_rng(0))
    split = cluster_meanshift(arrays, MeanShiftConfig(bandwidth=0.5, min_size=1))
    assert split.max() == 3  # object 1 in two pieces
    for fn, config_type in (
        (cluster_meanshift, MeanShiftConfig),
        (cluster_consistency, ConsistencyConfig),
    ):
        if fn is cluster_consistency:
            arrays["pixel_embedding_g"] = arrays["pixel_embedding"].copy()
        joined = fn(arrays, config_type(bandwidth=0.5, min_size=1, merge_distance=2.0))
        assert _same_partition(joined, truth)
    # a distance above the gap between the objects' means joins them too (single linkage)
    assert (
        cluster_meanshift(
            arrays, MeanShiftConfig(bandwidth=0.5, min_size=1, merge_distance=6.0)
        ).max()
        == 1
    )


def test_merge_touching_needs_contact_and_works_in_3d():
    lab = np.zeros((3, 4, 6), np.uint32)
    lab[:, :, :2], lab[:, :, 2:3], lab[:, :, 4:] = 1, 2, 3  # 3 does not touch 2
    emb = np.zeros((2, *lab.shape), np.float32)  # all three embedded alike
    merged = merge_touching(lab, emb, 1.0)
    assert merged.dtype == lab.dtype
    assert _same_partition(merged, np.where(lab == 2, 1, lab))
    assert merge_touching(lab, emb, 0.0) is lab


def _agreement_by_labelling(labels, emb_g, keep, radius, num_anchors, rng, min_size):
    """object_agreement as it was written first: distances from each anchor to the whole
    window, then a connected-component labelling per anchor (the reference for the
    breadth-first kernel)."""
    from scipy import ndimage as ndi

    median = np.ones(int(labels.max()) + 1)
    structure = np.zeros((3,) * (labels.ndim + 1), bool)
    structure[1] = ndi.generate_binary_structure(labels.ndim, 1)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        win = tuple(
            slice(
                max(0, b.start - (b.stop - b.start) // 2 - 1),
                min(n, b.stop + (b.stop - b.start) // 2 + 1),
            )
            for b, n in zip(box, labels.shape, strict=True)
        )
        obj = (labels[win] == i).ravel()
        members = np.flatnonzero(obj)
        if members.size < min_size:
            continue
        k = min(num_anchors, members.size, max(8, 50_000 // obj.size))
        pick = rng.choice(members, size=k, replace=False)
        g = emb_g[(slice(None), *win)].reshape(emb_g.shape[0], -1).astype(np.float64)
        d2 = ((g[:, None, :] - g[:, pick][:, :, None]) ** 2).sum(0)
        near = (d2 <= radius**2) & keep[win].ravel()[None, :]
        near[np.arange(k), pick] = True
        grown, _ = ndi.label(near.reshape(k, *labels[win].shape), structure)
        grown = grown.reshape(k, -1)
        region = grown == grown[np.arange(k), pick][:, None]
        inter = (region & obj[None, :]).sum(1)
        median[i] = float(np.median(inter / (region.sum(1) + members.size - inter)))
    return median


@pytest.mark.parametrize("ndim", [2, 3])
def test_object_agreement_kernel_matches_labelling(ndim):
    # pieces of a noisy clustering, g a noisy copy of f: IoUs all over (0, 1]
    rng = np.random.default_rng(ndim)
    shape = (40, 44) if ndim == 2 else (10, 16, 18)
    emb = rng.normal(0, 1.0, (4, *shape)).astype(np.float32)
    from scipy import ndimage as ndi

    emb = ndi.gaussian_filter(emb, (0,) + (1.5,) * ndim)
    keep = rng.random(shape) > 0.1
    clusters = np.argmax(emb[:3], axis=0) + 1
    pieces, _ = ndi.label(np.where(keep, clusters, 0) == 1)
    for c in (2, 3):
        more, _ = ndi.label(np.where(keep, clusters, 0) == c)
        pieces = np.where(more > 0, more + pieces.max(), pieces)
    pieces = pieces.astype(np.uint32)
    g = emb + rng.normal(0, 0.05, emb.shape).astype(np.float32)
    for radius in (0.1, 0.3):
        fast = object_agreement(pieces, g, keep, radius, 10, np.random.default_rng(0), min_size=3)
        ref = _agreement_by_labelling(pieces, g, keep, radius, 10, np.random.default_rng(0), 3)
        np.testing.assert_allclose(fast, ref, atol=1e-12)
        assert 0.1 < np.median(fast[1:]) < 1.0  # neither all nor nothing agrees


def test_hdbscan_reuses_its_tree_across_epsilon_and_gives_a_fresh_fits_labels():
    from napari_instseg.core.assembly import reuse

    truth, arrays = _scene(np.random.default_rng(12), n_side=8)
    arrays["pixel_embedding"] += np.random.default_rng(3).normal(0, 0.4, truth.shape)[None]
    cfg = HdbscanConfig(max_points=1500, min_size=1, split_disconnected=False)
    found = []
    for eps in (0.0, 0.6, 6.0):
        reuse.forget()
        rng = np.random.default_rng(0)
        fresh = cluster_hdbscan(arrays, replace(cfg, epsilon=eps), rng=rng)
        fresh_state = rng.bit_generator.state
        reuse.forget()
        cluster_hdbscan(arrays, replace(cfg, epsilon=1.0), rng=np.random.default_rng(0))
        rng = np.random.default_rng(0)
        kept = cluster_hdbscan(arrays, replace(cfg, epsilon=eps), rng=rng)  # the kept tree
        np.testing.assert_array_equal(kept, fresh)
        assert rng.bit_generator.state == fresh_state  # drawn as if the sample were drawn again
        found.append(int(fresh.max()))
    assert found[0] > found[-1]  # epsilon matters: clusters closer than it merge


def test_an_edit_in_place_is_not_answered_from_what_was_kept():
    truth, arrays = _scene(np.random.default_rng(13), n_side=3)
    before = cluster_meanshift(arrays, MeanShiftConfig(min_size=1, split_disconnected=False))
    emb = arrays["pixel_embedding"]
    emb[:, truth == 2] = emb[:, truth == 1].mean(axis=1, keepdims=True)  # 1 and 2 now alike
    after = cluster_meanshift(arrays, MeanShiftConfig(min_size=1, split_disconnected=False))
    assert after.max() == before.max() - 1
