"""The ``flow_dynamics`` back-end and its steps.

Known answers: given the flows and distance the ``flows`` method is trained to predict,
the back-end gives back the label image exactly (same partition of the same pixels), for
touching convex objects in 2D and 3D and for touching thin curved rods.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import expand_labels

from napari_instseg.core.arrays import relabel_consecutive
from napari_instseg.core.assembly import get_backend
from napari_instseg.core.assembly.flows import (
    FlowDynamicsConfig,
    absorb_small_groups,
    estimate_niter,
    flow_errors,
    follow_flows,
    group_end_points,
    remove_bad_flow_masks,
    segment_flow_dynamics,
)
from napari_instseg.core.flow_fields import labels_to_fields


def target_arrays(labels):
    fields = labels_to_fields(labels)
    distance = np.where(labels > 0, fields.distance, -5.0).astype(np.float32)
    return {"flow": fields.flow, "distance": distance}


def touching_cells(shape, n, grow, seed):
    """Voronoi-like touching objects grown from ``n`` random seeds (2D or 3D)."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.uint32)
    for i in range(n):
        seeds[tuple(int(rng.integers(3, s - 3)) for s in shape)] = i + 1
    return relabel_consecutive(expand_labels(seeds, grow))


def curved_rods(shape=(80, 80), width=5, sectors=5):
    """Rings of ``width`` pixels cut into touching arcs: bent, elongated, packed."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = shape[0] / 2 - 0.5, shape[1] / 2 - 0.5
    r, a = np.hypot(yy - cy, xx - cx), np.arctan2(yy - cy, xx - cx)
    labels = np.zeros(shape, np.uint32)
    k = 1
    for j, r0 in enumerate(range(8, shape[0] // 2 - 2, width)):
        sector = np.floor(((a + np.pi + 0.5 * j) % (2 * np.pi)) / (2 * np.pi) * sectors)
        for s in range(sectors):
            labels[(r >= r0) & (r < r0 + width) & (sector == s)] = k
            k += 1
    return labels


def assert_same_partition(found, truth):
    assert found.max() == len(np.unique(truth)) - 1
    for i in np.unique(truth[truth > 0]):
        ids = np.unique(found[truth == i])
        assert ids.size == 1 and ids[0] > 0, f"object {i} split or lost: {ids}"
        np.testing.assert_array_equal(found == ids[0], truth == i)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_touching_objects_exactly_2d(seed):
    truth = touching_cells((96, 96), 14, 12, seed)
    assert_same_partition(segment_flow_dynamics(target_arrays(truth)), truth)


def test_recovers_touching_objects_exactly_3d():
    truth = touching_cells((28, 36, 36), 7, 9, 0)
    assert_same_partition(segment_flow_dynamics(target_arrays(truth)), truth)


def test_recovers_touching_curved_rods_exactly():
    truth = curved_rods()
    assert truth.max() > 20
    assert_same_partition(segment_flow_dynamics(target_arrays(truth)), truth)


def test_suppression_keeps_thin_bent_rods_whole():
    truth = curved_rods(width=4, sectors=3)
    arrays = target_arrays(truth)
    assert_same_partition(segment_flow_dynamics(arrays, FlowDynamicsConfig(suppress=True)), truth)
    # unit-speed steps slide along the ridge of 4-pixel-wide arcs and split some of them
    assert segment_flow_dynamics(arrays, FlowDynamicsConfig(suppress=False)).max() > truth.max()
    wide = touching_cells((96, 96), 14, 12, 0)
    assert_same_partition(
        segment_flow_dynamics(target_arrays(wide), FlowDynamicsConfig(suppress=False)), wide
    )


def test_the_registered_backend_uses_the_defaults():
    backend = get_backend("flow_dynamics")
    assert backend.config_type is FlowDynamicsConfig
    assert set(backend.requires) == {"flow", "distance"}
    truth = touching_cells((64, 64), 6, 10, 3)
    np.testing.assert_array_equal(
        backend(target_arrays(truth)), segment_flow_dynamics(target_arrays(truth))
    )


def test_flow_threshold_drops_objects_whose_flows_disagree():
    truth = touching_cells((64, 64), 6, 10, 4)
    arrays = target_arrays(truth)
    bad = truth == 2
    arrays["flow"] = arrays["flow"].copy()
    arrays["flow"][:, bad] = np.array([0.0, 1.0], np.float32)[:, None]  # all pixels flow right
    kept = segment_flow_dynamics(arrays, FlowDynamicsConfig(flow_threshold=0.0))
    dropped = segment_flow_dynamics(arrays, FlowDynamicsConfig(flow_threshold=0.4))
    assert kept[bad].all()
    assert not dropped[bad].any()
    assert dropped.max() == truth.max() - 1


def test_flow_errors_are_zero_for_target_flows():
    truth = touching_cells((48, 48), 5, 10, 5)
    errors = flow_errors(truth, labels_to_fields(truth).flow)
    assert errors.shape == (truth.max() + 1,)
    np.testing.assert_allclose(errors, 0.0, atol=1e-10)
    flipped = flow_errors(truth, -labels_to_fields(truth).flow)
    assert (flipped[1:] > 3.0).all()  # opposite unit vectors: |2 mu|^2 = 4 off the ridge


def test_mask_threshold_and_mask_restrict_the_foreground():
    truth = np.zeros((40, 40), np.uint32)
    truth[5:35, 5:35] = 1
    arrays = target_arrays(truth)
    full = segment_flow_dynamics(arrays)
    core = segment_flow_dynamics(arrays, FlowDynamicsConfig(mask_threshold=5.0))
    assert (full > 0).sum() == 900
    assert 0 < (core > 0).sum() < 900 and core[20, 20] == 1
    mask = np.ones(truth.shape, bool)
    mask[:, :20] = False
    masked = segment_flow_dynamics(arrays, FlowDynamicsConfig(flow_threshold=0.0), mask=mask)
    assert not masked[~mask].any() and masked[20, 25] > 0


def test_follow_flows_damps_each_step():
    flow = np.zeros((2, 5, 40), np.float32)
    flow[1] = 1.0  # everything flows right at unit speed
    fg = np.zeros((5, 40), bool)
    fg[2, 3] = fg[2, 38] = True
    ends = follow_flows(flow, fg, niter=10)
    harmonic = sum(1.0 / (1 + t) for t in range(10))
    np.testing.assert_allclose(ends[0], [2.0, 3.0 + harmonic], rtol=1e-6)
    np.testing.assert_allclose(ends[1], [2.0, 39.0])  # clamped at the edge
    flow3 = np.zeros((3, 6, 4, 4), np.float32)
    flow3[0] = -1.0
    fg3 = np.zeros((6, 4, 4), bool)
    fg3[5, 1, 2] = True
    np.testing.assert_allclose(follow_flows(flow3, fg3, niter=3)[0], [5 - 11 / 6, 1, 2])


def test_group_end_points_and_small_groups():
    fg = np.zeros((10, 10), bool)
    fg[:, :] = True
    ends = np.argwhere(fg).astype(np.float32)
    ends[:50] = [2.2, 2.0]  # top half ends at (2, 2), bottom half at (7, 7) and (7.6, 8.4)
    ends[50:] = [7.0, 7.0]
    ends[95:] = [7.6, 8.4]
    labels = group_end_points(ends, fg)
    assert len(np.unique(labels)) == 2  # (7, 7) and (8, 8) touch diagonally: one cloud
    assert labels[0, 0] != labels[9, 9]
    split = np.zeros((8, 12), np.uint32)
    split[:, :6] = 1
    split[:, 6:] = 2
    split[3:5, 5:7] = 3  # a fragment touching both, more of it against 2
    split[3, 7] = 3
    merged = absorb_small_groups(split, min_size=10)
    assert set(np.unique(merged)) == {1, 2} and merged[3, 6] == 2
    lone = np.zeros((8, 8), np.uint32)
    lone[1, 1] = 4
    np.testing.assert_array_equal(absorb_small_groups(lone, min_size=10), lone)


def test_estimate_niter_is_about_the_diameter():
    truth = np.zeros((80, 80), np.uint32)
    yy, xx = np.mgrid[:80, :80]
    truth[(yy - 40) ** 2 + (xx - 40) ** 2 <= 15**2] = 1
    arrays = target_arrays(truth)
    assert 26 <= estimate_niter(arrays["distance"], truth > 0) <= 36
    assert estimate_niter(arrays["distance"], np.zeros_like(truth, bool)) == 5


def test_min_size_and_removal_leave_consecutive_ids():
    truth = np.zeros((40, 40), np.uint32)
    truth[2:12, 2:12] = 1
    truth[20:23, 20:23] = 2  # 9 pixels
    truth[30:38, 5:15] = 3
    out = segment_flow_dynamics(target_arrays(truth), FlowDynamicsConfig(min_size=15))
    assert out.dtype == np.uint32 and out.max() == 2
    assert not out[20:23, 20:23].any()
    np.testing.assert_array_equal(np.unique(out), [0, 1, 2])
    remove = remove_bad_flow_masks(truth, labels_to_fields(truth).flow, 0.4)
    np.testing.assert_array_equal(remove, truth)
