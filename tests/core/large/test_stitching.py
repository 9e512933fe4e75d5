"""Stitching without dask: every step of the engine on numpy arrays.

A segmenter whose result at a pixel depends only on a neighbourhood smaller than the halo
must come out of blocks exactly as from the whole image (up to renumbering).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from napari_instseg.core.large.plan import intersect, plan_blocks, shift
from napari_instseg.core.large.stitch import (
    compose,
    describe_block,
    match_views,
    resolve,
)


def blockwise(image, segment, plan):
    """What the engine does, in memory: segment reads, describe, match, resolve, compose."""
    views = {b.index: segment(image[b.read]) for b in plan.blocks}
    tables = {b.index: describe_block(views[b.index], b, plan.shape) for b in plan.blocks}
    matches = []
    for a, b in plan.pairs():
        ba, bb = plan.blocks[a], plan.blocks[b]
        region = intersect(ba.read, bb.read)
        ids_a, ids_b, _ = match_views(
            views[a][shift(region, ba.read)], views[b][shift(region, bb.read)]
        )
        matches.append((a, b, ids_a, ids_b))
    res = resolve(plan, tables, matches)
    out = np.zeros(plan.shape, np.uint32)
    for block in plan.blocks:
        others = []
        for other in plan.overlapping(block.core):
            if other.index != block.index:
                region = intersect(other.read, block.core)
                others.append(
                    (
                        views[other.index][shift(region, other.read)],
                        res.luts[other.index],
                        shift(region, block.core),
                    )
                )
        own = views[block.index][block.core_in_read()]
        out[block.core] = compose(own, res.luts[block.index], others)
    return out, res


def same_partition(a, b):
    """Equal up to renumbering (background stays background)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def threshold_cc(image):
    return ndi.label(ndi.uniform_filter(image, 3) > 0.5)[0].astype(np.uint32)


def blobs(shape, n, rmax, seed):
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    img = np.zeros(shape, np.float32)
    for _ in range(n):
        c = rng.uniform(0, shape).reshape((-1,) + (1,) * len(shape))
        r = rng.uniform(2, rmax)
        img[((grid - c) ** 2).sum(0) < r * r] = 1
    return img


@settings(max_examples=15, deadline=None)
@given(
    core=st.integers(24, 90),
    halo=st.integers(14, 30),
    seed=st.integers(0, 10_000),
)
def test_local_segmenter_is_exact_in_2d(core, halo, seed):
    image = blobs((150, 170), 40, 6, seed)  # objects up to 13 px < halo
    out, res = blockwise(image, threshold_cc, plan_blocks(image.shape, core=core, halo=halo))
    whole = threshold_cc(image)
    assert same_partition(out, whole)
    # consecutive global ids 1..N
    assert set(np.unique(out)) - {0} == set(range(1, int(whole.max()) + 1))
    assert res.n_objects == whole.max()


def test_local_segmenter_is_exact_in_3d():
    image = blobs((30, 60, 50), 40, 5, 3)
    plan = plan_blocks(image.shape, core=(12, 24, 24), halo=(8, 12, 12))
    out, res = blockwise(image, threshold_cc, plan)
    assert same_partition(out, threshold_cc(image))
    assert res.stats["joined_objects"] > 0  # objects crossing borders were seen twice


def test_touching_objects_are_never_merged_across_a_border():
    # Dense touching squares, each its own instance (cellpose#1148: merged by contact).
    tiles = np.arange(1, 13 * 13 + 1).reshape(13, 13)
    image = np.kron(tiles, np.ones((9, 9))).astype(np.float32)

    def by_value(x):  # each constant region is one object
        out = np.zeros(x.shape, np.uint32)
        for k, v in enumerate(np.unique(x), start=1):
            out[x == v] = k
        return out

    out, res = blockwise(image, by_value, plan_blocks(image.shape, core=32, halo=12))
    assert out.max() == 169 and same_partition(out, by_value(image))
    assert res.stats["joined_objects"] > 0  # and border objects were stitched (cellpose#1482)


def test_objects_wider_than_the_halo_are_stitched_from_parts():
    image = np.zeros((96, 400), np.float32)
    image[10:16, 5:390] = 1  # a 385 px bar across six blocks, halo 8
    image[40:60, 100:300] = 1
    out, res = blockwise(image, threshold_cc, plan_blocks(image.shape, core=64, halo=8))
    assert same_partition(out, threshold_cc(image))
    assert res.stats["wider_than_halo"] == 2


def test_views_that_disagree_are_not_joined():
    a = np.zeros((10, 10), np.uint32)
    b = np.zeros((10, 10), np.uint32)
    a[2:8, 2:8] = 1
    b[2:8, 2:4] = 5  # a sliver: IoU 1/3
    b[0:2, 0:2] = 6
    ids_a, ids_b, iou = match_views(a, b)
    assert ids_a.size == 0
    b[2:8, 2:6] = 5  # IoU 2/3
    ids_a, ids_b, iou = match_views(a, b)
    assert ids_a.tolist() == [1] and ids_b.tolist() == [5] and iou[0] == pytest.approx(2 / 3)


def test_describe_block_reports_centroids_and_cut_objects():
    plan = plan_blocks((100, 100), core=50, halo=10)
    block = plan.blocks[0]  # read [0, 70) x [0, 70): faces at 70 lie inside the image
    labels = np.zeros(plan.read_shape, np.uint32)
    labels[0:4, 0:4] = 3  # at the image corner: whole
    labels[30:40, 60:70] = 7  # touches the inner face: cut
    t = describe_block(labels, block, plan.shape)
    assert t.ids.tolist() == [3, 7]
    assert t.areas.tolist() == [16, 100]
    assert t.centroids[0].tolist() == [1.5, 1.5]
    assert t.centroids[1].tolist() == [34.5, 64.5]
    assert t.partial.tolist() == [False, True]
