"""Block plans: cores partition the image, read windows carry the halo, shards align."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_instseg.core.arrays import InputError
from napari_instseg.core.large.plan import intersect, plan_blocks


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    core=st.integers(8, 128),
    halo=st.integers(0, 40),
)
def test_cores_partition_the_image_and_reads_hold_the_halo(shape, core, halo):
    plan = plan_blocks(shape, core=core, halo=halo)
    owner = np.zeros(shape, int)
    for block in plan.blocks:
        owner[block.core] += 1
        for c, r, n, h, k in zip(block.core, block.read, shape, plan.halo, plan.core, strict=True):
            assert r.stop - r.start == min(k + 2 * h, n)
            # the read window holds the core and `halo` around it, as far as the image goes
            assert r.start <= max(c.start - h, 0) and r.stop >= min(c.stop + h, n)
            assert 0 <= r.start and r.stop <= n
        assert tuple(s.stop - s.start for s in block.read) == plan.read_shape
    assert np.all(owner == 1)


def test_pairs_are_exactly_the_blocks_whose_reads_overlap():
    plan = plan_blocks((500, 333), core=64, halo=40)  # reads reach two blocks away
    expected = {
        (a.index, b.index)
        for a, b in itertools.combinations(plan.blocks, 2)
        if intersect(a.read, b.read) is not None
    }
    assert set(plan.pairs()) == expected
    assert any(abs(a - b) > 1 for a, b in expected)  # not only direct neighbours


def test_3d_plan_and_read_ratio():
    plan = plan_blocks((40, 100, 90), core=(16, 64, 64), halo=(4, 16, 16))
    assert plan.grid_shape == (3, 2, 2)
    assert plan.read_shape == (24, 96, 90)
    assert plan.read_ratio() == pytest.approx(12 * 24 * 96 * 90 / (40 * 100 * 90))


def test_a_core_that_is_not_a_multiple_of_the_shard_is_refused():
    with pytest.raises(InputError, match="two blocks would write the same shard"):
        plan_blocks((4096, 4096), core=1000, halo=64, shard=512)
    plan = plan_blocks((4096, 4096), core=1024, halo=64, shard=512)
    assert plan.shard == (512, 512) and plan.chunk == (256, 256)
    with pytest.raises(InputError, match="does not divide the shard"):
        plan_blocks((4096, 4096), core=1024, halo=64, shard=512, chunk=300)


def test_bad_plans_are_refused():
    with pytest.raises(InputError, match="2D or 3D"):
        plan_blocks((10,), core=4, halo=1)
    with pytest.raises(InputError, match="core must be"):
        plan_blocks((10, 10), core=0, halo=1)
    with pytest.raises(InputError, match="one per spatial axis"):
        plan_blocks((10, 10), core=(4, 4, 4), halo=1)


def test_overlapping_finds_every_block_whose_read_meets_a_region():
    plan = plan_blocks((700, 530), core=64, halo=50)
    rng = np.random.default_rng(1)
    for _ in range(50):
        y, x = rng.integers(0, 700), rng.integers(0, 530)
        region = (slice(y, min(700, y + int(rng.integers(1, 200)))), slice(x, min(530, x + 30)))
        expected = [b.index for b in plan.blocks if intersect(b.read, region) is not None]
        assert [b.index for b in plan.overlapping(region)] == expected
