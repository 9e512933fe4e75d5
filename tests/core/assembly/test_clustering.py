"""Embedding clustering back-ends on embeddings with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.assembly.clustering import (
    cluster_consistency,
    cluster_hdbscan,
    cluster_meanshift,
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


@pytest.mark.parametrize("fn", [cluster_meanshift, cluster_hdbscan, cluster_consistency])
def test_recovers_the_objects(fn):
    truth, arrays = _scene(np.random.default_rng(0))
    labels = fn(arrays, rng=np.random.default_rng(0), min_size=1)
    assert _same_partition(labels, truth)


def test_hdbscan_subsample_scales_min_cluster_size():
    truth, arrays = _scene(np.random.default_rng(1), n_side=8)
    # 3136 object pixels, 2000 given to HDBSCAN; min_cluster_size 30 is in full-image pixels
    labels = cluster_hdbscan(arrays, max_points=2000, min_cluster_size=30, min_size=1)
    assert _same_partition(labels, truth)
    # no cluster can be as large as the whole foreground
    assert not cluster_hdbscan(arrays, max_points=2000, min_cluster_size=5000).any()


def test_foreground_threshold_and_mask():
    truth, arrays = _scene(np.random.default_rng(2))
    arrays["foreground"] = np.where(truth % 2 == 1, 0.9, 0.3).astype(np.float32)
    labels = cluster_meanshift(arrays, min_size=1)
    assert labels.max() == len(np.unique(truth[truth % 2 == 1]))
    mask = np.zeros(truth.shape, bool)
    mask[: truth.shape[0] // 2] = True
    assert not cluster_meanshift(arrays, mask=mask, min_size=1)[~mask].any()
    without_fg = {"pixel_embedding": arrays["pixel_embedding"]}
    # without a foreground every pixel is clustered: background is one more cluster
    assert cluster_meanshift(without_fg, min_size=1).max() == truth.max() + 1


def test_consistency_drops_what_the_other_view_splits():
    truth, arrays = _scene(np.random.default_rng(3), n_side=2, size=16)
    g = arrays["pixel_embedding_g"]
    g[0][(truth == 1) & (np.arange(truth.shape[1]) < 10)[None, :]] += 5.0  # g halves object 1
    labels = cluster_consistency(arrays, min_size=1, rng=np.random.default_rng(0))
    assert not labels[truth == 1].any()
    assert _same_partition(labels[truth > 1], truth[truth > 1])
    kept = cluster_consistency(arrays, min_size=1, iou_threshold=0.3)
    assert kept[truth == 1].all()


def test_backends_registered_with_their_knobs():
    assert get_backend("meanshift").knob_names() == (
        "bandwidth",
        "fg_threshold",
        "min_size",
        "split_disconnected",
        "gaussian",
    )
    assert "pixel_embedding_g" in get_backend("consistency").requires


def test_split_disconnected_separates_far_objects_embedded_alike():
    truth, arrays = _scene(np.random.default_rng(5), n_side=2, size=10)
    emb = arrays["pixel_embedding"]
    emb[:, truth == 4] = emb[:, truth == 1].mean(axis=1, keepdims=True)  # 1 and 4 look alike
    merged = cluster_meanshift(arrays, min_size=1, split_disconnected=False)
    assert merged.max() == 3
    assert _same_partition(cluster_meanshift(arrays, min_size=1), truth)


def test_consistency_on_more_pixels_than_the_iou_sample(monkeypatch):
    import napari_instseg.core.assembly.clustering as clustering

    truth, arrays = _scene(np.random.default_rng(7), n_side=4, size=12)
    full = cluster_consistency(arrays, min_size=1, rng=np.random.default_rng(0))
    monkeypatch.setattr(clustering, "IOU_SAMPLE", 300)  # fewer than the 1936 object pixels
    sampled = cluster_consistency(arrays, min_size=1, rng=np.random.default_rng(0))
    assert _same_partition(full, truth)
    assert _same_partition(sampled, truth)


def test_non_finite_embedding_is_refused():
    _, arrays = _scene(np.random.default_rng(8), n_side=2)
    arrays["pixel_embedding"][0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cluster_meanshift(arrays)
