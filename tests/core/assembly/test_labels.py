"""The label helpers the back-ends share: small objects, small segments, small holes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label as label_components

from napari_instseg.core.assembly.labels import (
    fill_small_holes,
    finish_labels,
    merge_small_segments,
    remove_small_objects,
)


def reference_merge(labels, max_size):
    """Small-segment merge recomputing sizes and boundaries from the image at every step."""
    labels = labels.copy()
    while True:
        ids, sizes = np.unique(labels[labels > 0], return_counts=True)
        border = {}
        for axis in range(labels.ndim):
            a = np.moveaxis(labels, axis, 0)
            for x, y in zip(a[:-1].ravel(), a[1:].ravel(), strict=True):
                if x and y and x != y:
                    for s, t in ((x, y), (y, x)):
                        border.setdefault(int(s), {}).setdefault(int(t), 0)
                        border[int(s)][int(t)] += 1
        candidates = [
            (s, i) for i, s in zip(ids.tolist(), sizes.tolist(), strict=True) if s <= max_size
        ]
        candidates = [(s, i) for s, i in sorted(candidates) if border.get(i)]
        if not candidates:
            return labels
        _, i = candidates[0]
        j = max(border[i], key=lambda k: (border[i][k], -k))
        labels[labels == i] = j


def test_remove_small_objects():
    labels = np.array([[1, 1, 1, 0, 2], [3, 3, 0, 0, 0]], np.uint32)
    np.testing.assert_array_equal(
        remove_small_objects(labels, 2), [[1, 1, 1, 0, 0], [3, 3, 0, 0, 0]]
    )
    np.testing.assert_array_equal(remove_small_objects(labels, 1), labels)


def test_finish_labels_gives_uint32_ids_one_to_n_without_small_objects():
    labels = np.array([[0, 9, 9, 9], [4, 0, 7, 7]], np.int64)
    out = finish_labels(labels, 2)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, [[0, 2, 2, 2], [0, 0, 1, 1]])
    np.testing.assert_array_equal(finish_labels(labels, 0), [[0, 3, 3, 3], [1, 0, 2, 2]])


def test_fill_small_holes_only_inside_one_object():
    labels = np.zeros((20, 30), np.uint32)
    labels[2:12, 2:12] = 1
    labels[5:7, 5:7] = 0  # a 4-pixel hole in object 1
    labels[2:12, 15:20] = 2
    labels[2:12, 20:25] = 3
    labels[6, 19:21] = 0  # a 2-pixel gap between objects 2 and 3
    labels[0, 20] = 0
    out = fill_small_holes(labels, max_size=15)
    assert (out[5:7, 5:7] == 1).all()
    assert (out[6, 19:21] == 0).all()
    assert fill_small_holes(labels, max_size=4)[5, 5] == 0  # not under 4 pixels


def test_small_fragment_joins_the_longest_border():
    labels = np.zeros((6, 8), np.uint16)
    labels[:, :4] = 1
    labels[:, 5:] = 2
    labels[2, 4] = 3  # 3-pixel fragment: 2 faces with segment 1 (24 px), 4 with 2 (17 px)
    labels[3, 4] = 3
    labels[3, 5] = 3
    merged = merge_small_segments(labels, 3)
    assert merged.dtype == np.uint16
    expected = labels.copy()
    expected[labels == 3] = 2  # the longest border wins, not the largest neighbour
    np.testing.assert_array_equal(merged, expected)
    np.testing.assert_array_equal(merge_small_segments(labels, 2), labels)  # too big to merge


def test_isolated_small_segment_stays_and_background_does_not_count():
    labels = np.zeros((10, 10), np.uint32)
    labels[:5, :5] = 1
    labels[8, 8] = 2  # touches only background
    np.testing.assert_array_equal(merge_small_segments(labels, 10), labels)


def test_merges_cascade_and_outgrow_the_limit():
    labels = np.zeros((3, 10), np.int32)
    labels[:, :6] = 5  # 18 px
    labels[1, 6:8] = 7  # 2 px, touches 5
    labels[1, 8] = 9  # 1 px, touches only 7
    merged = merge_small_segments(labels, 3)
    # 9 joins 7 (now 3 px, still small), which joins 5
    np.testing.assert_array_equal(merged, np.where(labels > 0, 5, 0))
    pair = np.array([[1, 1, 1, 2, 2, 2]])
    np.testing.assert_array_equal(merge_small_segments(pair, 4), np.full_like(pair, 2))


def test_merge_respects_the_mask():
    labels = np.array([[1, 1, 1, 2, 3, 3, 3]])
    mask = np.array([[1, 1, 1, 1, 0, 1, 1]], bool)
    merged = merge_small_segments(labels, 1, mask=mask)
    np.testing.assert_array_equal(merged, [[1, 1, 1, 1, 3, 3, 3]])  # 3 outside: not a neighbour


@pytest.mark.parametrize("seed", range(5))
def test_merge_matches_reference(seed):
    rng = np.random.default_rng(seed)
    shape = (12, 14) if seed % 2 else (4, 6, 7)
    labels = rng.integers(0, 25, size=shape).astype(np.uint32)
    labels[rng.random(shape) < 0.2] = 0
    labels = label_components(labels, background=0, connectivity=1).astype(np.uint32)
    sparse = np.where(labels > 0, labels.astype(np.uint64) * 10**12 + 7, 0)  # no lookup table
    for max_size in (1, 2, 4, 9):
        expected = reference_merge(labels, max_size)
        np.testing.assert_array_equal(merge_small_segments(labels, max_size), expected)
        np.testing.assert_array_equal(
            merge_small_segments(sparse, max_size),
            np.where(expected > 0, expected.astype(np.uint64) * 10**12 + 7, 0),
        )
