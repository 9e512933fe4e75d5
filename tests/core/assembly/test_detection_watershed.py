"""The ``detection_watershed`` back-end (All-Cell Segmenter) and its steps.

Known answers: given the height map the method is trained to predict, a sigmoid-like
foreground and the exact boxes of the objects (plus duplicates and a box inside a cell), the
back-end gives the objects back; NMS agrees with a brute-force greedy NMS; the routing follows
the original's rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.special import expit

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.assembly.detection import (
    MODALITY_THRESHOLDS,
    DetectionWatershedConfig,
    choose_route,
    detection_watershed_labels,
    filter_ioa,
    height_errors,
    height_from_labels,
    markers_from_boxes,
    nms,
    refine_by_height,
    segment_detection_watershed,
    select_boxes,
)
from napari_instseg.core.assembly.flows import FlowDynamicsConfig, segment_flow_dynamics
from napari_instseg.core.flow_fields import labels_to_fields
from napari_instseg.core.modality import BRIGHTFIELD, FLUORESCENCE, PHASE

# (cy, cx, ry, rx): two touching discs, a separate disc and an ellipse
SHAPES = [(25, 25, 12, 12), (25, 48, 12, 12), (70, 28, 10, 10), (66, 70, 10, 16)]


def scene(shape=(96, 100), shapes=SHAPES):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, np.uint32)
    for k, (cy, cx, ry, rx) in enumerate(shapes, start=1):
        truth[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = k
    return truth


def exact_boxes(truth):
    return np.array(
        [[sl[0].start, sl[1].start, sl[0].stop, sl[1].stop] for sl in ndi.find_objects(truth)],
        np.float32,
    ).reshape(-1, 4)


def sigmoid_foreground(truth):
    """About 0.95 on the object edge rising inwards, about 0.05 just outside."""
    signed = ndi.distance_transform_edt(truth > 0) - ndi.distance_transform_edt(truth == 0)
    return expit(3.0 * signed).astype(np.float32)


def scene_arrays(truth, boxes=None, scores=None, flows=False):
    boxes = exact_boxes(truth) if boxes is None else np.asarray(boxes, np.float32)
    scores = np.full(len(boxes), 0.9, np.float32) if scores is None else scores
    arrays = {
        "foreground": sigmoid_foreground(truth),
        "height": height_from_labels(truth),
        "boxes": boxes,
        "box_scores": np.asarray(scores, np.float32),
    }
    if flows:
        fields = labels_to_fields(truth)
        arrays["flow"] = fields.flow
        arrays["distance"] = np.where(truth > 0, fields.distance, -5.0).astype(np.float32)
    return arrays


def assert_recovers(labels, truth, min_iou=0.95):
    assert labels.dtype == np.uint32
    assert labels.max() == truth.max()
    for k in range(1, int(truth.max()) + 1):
        obj = truth == k
        found = np.bincount(labels[obj]).argmax()
        assert found > 0, f"object {k} missed"
        pred = labels == found
        iou = (obj & pred).sum() / (obj | pred).sum()
        assert iou > min_iou, f"object {k}: IoU {iou:.3f}"


def brute_force_nms(boxes, scores, thr):
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        ok = True
        for j in keep:
            y0, x0 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            y1, x1 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(0.0, y1 - y0) * max(0.0, x1 - x0)
            a_i = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            a_j = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
            if inter / (a_i + a_j - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


# ---------------------------------------------------------------------------------------------
# boxes


@pytest.mark.parametrize("thr", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_brute_force(seed, thr):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 100, (300, 2))
    sizes = rng.uniform(2, 30, (300, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    scores = rng.random(300)
    kept = nms(boxes, scores, thr)
    assert kept.tolist() == brute_force_nms(boxes.tolist(), scores.tolist(), thr)
    assert 0 < len(kept) < 300


def test_nms_edge_cases():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    # identical boxes: the better score stays; the shifted one overlaps by IoU 0.68
    np.testing.assert_array_equal(nms(boxes, [0.5, 0.9, 0.8, 0.1], 0.5), [1, 3])
    np.testing.assert_array_equal(nms(boxes, [0.5, 0.9, 0.8, 0.1], 0.7), [1, 2, 3])
    with pytest.raises(ValueError, match="scores"):
        nms(boxes, [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        nms(np.zeros((3, 3)), np.zeros(3), 0.5)


def test_filter_ioa_drops_the_inner_box():
    boxes = np.array(
        [
            [10, 10, 30, 30],  # 0: inside 3 (larger)
            [0, 0, 40, 40],  # 1: large
            [35, 35, 45, 45],  # 2: a quarter of it inside 1: kept
            [5, 5, 35, 35],  # 3: all inside 1: dropped
            [0, 0, 40, 40],  # 4: identical to 1: the first of the two stays
            [0, 40, 10, 50],  # 5: touches 1 only along an edge
        ],
        float,
    )
    np.testing.assert_array_equal(filter_ioa(boxes, 0.8), [1, 2, 5])
    # 85% inside: dropped at 0.8, kept at 0.9
    pair = np.array([[0, 0, 20, 20], [3, 0, 23, 20]], float)
    np.testing.assert_array_equal(filter_ioa(pair, 0.8), [0])
    np.testing.assert_array_equal(filter_ioa(pair, 0.9), [0, 1])
    np.testing.assert_array_equal(filter_ioa(boxes, 1.0), np.arange(6))
    assert filter_ioa(np.zeros((0, 4)), 0.8).size == 0


def test_select_boxes_thresholds_nms_and_ioa():
    boxes = np.array(
        [[0, 0, 20, 20], [1, 1, 21, 21], [5, 5, 12, 12], [40, 40, 50, 50], [60, 60, 70, 70]],
        float,
    )
    scores = np.array([0.9, 0.8, 0.95, 0.5, 0.1])
    out = select_boxes(boxes, scores, conf_threshold=0.2, nms_iou=0.25, ioa_threshold=0.8)
    # 4 is under the confidence cut, 1 a duplicate of 0, 2 inside 0; score order kept
    np.testing.assert_array_equal(out, boxes[[0, 3]])
    out = select_boxes(boxes, scores, conf_threshold=0.2, nms_iou=0.25, ioa_threshold=1.0)
    np.testing.assert_array_equal(out, boxes[[2, 0, 3]])


def test_markers_from_boxes():
    boxes = np.array([[10, 10, 21, 21], [12, 12, 21, 21], [-6, 30, 2, 40]], float)
    markers = markers_from_boxes(boxes, (40, 40), radius=2)
    assert markers.dtype == np.uint32
    assert markers[15, 15] == 1 and markers[16, 16] == 1  # box 0 wins where discs overlap
    assert markers[18, 16] == 2
    assert (markers == 1).sum() == 13  # a radius-2 disc
    assert (
        markers[0, 35] == 3 and (markers == 3).sum() == 9
    )  # centre clipped onto row 0: half a disc
    assert not markers_from_boxes(np.zeros((0, 4)), (5, 5), radius=2).any()
    single = markers_from_boxes([[4, 4, 5, 5]], (9, 9), radius=0)
    assert single.sum() == 1 and single[4, 4] == 1


# ---------------------------------------------------------------------------------------------
# height and refinement


def test_height_from_labels_is_scale_free():
    truth = scene()
    height = height_from_labels(truth)
    assert height[truth == 0].max() == 0
    for k in range(1, 5):
        values = height[truth == k]
        dist = ndi.distance_transform_edt(truth == k)[truth == k]
        np.testing.assert_allclose(values, dist / (np.median(dist) + 1), rtol=1e-5)
    # touching objects: each one's distance stops at the other
    assert height[25, 36] < 0.3 and height[25, 37] < 0.3
    # a larger copy has about the same centre height
    big = height_from_labels(scene((200, 200), [(100, 100, 40, 40)]))
    small = height_from_labels(scene((200, 200), [(100, 100, 10, 10)]))
    assert abs(big.max() - small.max()) < 0.3 * small.max()  # 4x the radius


def test_refine_drops_a_cell_with_the_wrong_height():
    truth = scene()
    height = height_from_labels(truth)
    assert np.allclose(height_errors(truth, height)[1:], 0)
    wrong = height.copy()
    wrong[truth == 3] = 2.5
    errors = height_errors(truth, wrong)
    assert errors[3] > 0.4 and np.allclose(errors[[1, 2, 4]], 0)
    refined = refine_by_height(truth, wrong, 0.4)
    assert not refined[truth == 3].any()
    np.testing.assert_array_equal(refined[truth != 3], truth[truth != 3])
    np.testing.assert_array_equal(refine_by_height(truth, wrong, 0.0), truth)
    # through the whole back-end: the wrong cell is grown, then dropped
    arrays = scene_arrays(truth)
    arrays["height"] = wrong
    labels = segment_detection_watershed(arrays, DetectionWatershedConfig(modality=FLUORESCENCE))
    assert labels.max() == 3 and not labels[truth == 3].any()
    labels = segment_detection_watershed(
        arrays, DetectionWatershedConfig(modality=FLUORESCENCE, refine_threshold=0.0)
    )
    assert labels.max() == 4


# ---------------------------------------------------------------------------------------------
# assembly


@pytest.mark.parametrize("modality", [FLUORESCENCE, BRIGHTFIELD, PHASE])
def test_recovers_objects_from_exact_boxes(modality):
    truth = scene()
    labels = segment_detection_watershed(
        scene_arrays(truth), DetectionWatershedConfig(modality=modality)
    )
    assert_recovers(labels, truth)


def test_duplicates_and_a_box_inside_a_cell_do_not_split_it():
    truth = scene()
    boxes = exact_boxes(truth)
    extra = np.array(
        [
            boxes[0] + 1.0,  # near-duplicate of cell 1
            boxes[3] - 1.0,  # near-duplicate of cell 4
            [20, 44, 30, 56],  # inside cell 2, off its centre
        ],
        np.float32,
    )
    scores = np.r_[np.full(4, 0.9), [0.8, 0.7, 0.95]].astype(np.float32)
    arrays = scene_arrays(truth, np.concatenate([boxes, extra]), scores)
    assert_recovers(
        segment_detection_watershed(arrays, DetectionWatershedConfig(modality=FLUORESCENCE)), truth
    )
    # without the IoA filter the inner box seeds a second cell in object 2
    split = segment_detection_watershed(
        arrays, DetectionWatershedConfig(modality=FLUORESCENCE, ioa_threshold=1.0)
    )
    assert split.max() == 5 and np.unique(split[truth == 2]).size == 2


def test_low_confidence_boxes_are_ignored_per_modality():
    truth = scene()
    scores = np.array([0.9, 0.9, 0.9, 0.15], np.float32)  # between bf (0.10) and fl (0.25)
    boxes = exact_boxes(truth)
    # a flat height under t2 keeps cell 4 from seeding itself
    arrays = scene_arrays(truth, boxes, scores)
    arrays["height"] = np.where(truth == 4, 1.0, arrays["height"]).astype(np.float32)
    kw = {"refine_threshold": 0.0}
    assert (
        segment_detection_watershed(
            arrays, DetectionWatershedConfig(modality=BRIGHTFIELD, **kw)
        ).max()
        == 4
    )
    assert (
        segment_detection_watershed(
            arrays, DetectionWatershedConfig(modality=FLUORESCENCE, **kw)
        ).max()
        == 3
    )
    assert (
        segment_detection_watershed(
            arrays, DetectionWatershedConfig(modality=FLUORESCENCE, conf_threshold=0.1, **kw)
        ).max()
        == 4
    )


def test_an_object_without_a_box_is_found_by_its_height():
    truth = scene()
    boxes = exact_boxes(truth)[[0, 1, 3]]  # no box for object 3
    labels = segment_detection_watershed(
        scene_arrays(truth, boxes), DetectionWatershedConfig(modality=FLUORESCENCE)
    )
    assert_recovers(labels, truth)
    # with t2 above every height, object 3 has no seed
    labels = segment_detection_watershed(
        scene_arrays(truth, boxes), DetectionWatershedConfig(modality=FLUORESCENCE, t2=5.0)
    )
    assert labels.max() == 3 and not labels[truth == 3].any()


def test_labels_function_directly_and_small_objects():
    truth = scene()
    arrays = scene_arrays(truth)
    fg = arrays["foreground"] > 0.5
    labels = detection_watershed_labels(fg, arrays["height"], arrays["boxes"])
    assert_recovers(labels, truth)
    labels = detection_watershed_labels(
        fg, arrays["height"], arrays["boxes"], DetectionWatershedConfig(min_size=400)
    )
    assert labels.max() == 3  # the smallest disc (~317 px) is gone


def test_phase_contrast_adaptive_min_size():
    shapes = [*SHAPES, (88, 90, 2, 2)]  # a 13-pixel speck, far below mean area / 5
    truth = scene(shapes=shapes)
    arrays = scene_arrays(truth)
    arrays["height"] = np.where(truth == 5, 1.0, arrays["height"]).astype(np.float32)
    kw = {"refine_threshold": 0.0}
    assert (
        segment_detection_watershed(
            arrays, DetectionWatershedConfig(modality=FLUORESCENCE, **kw)
        ).max()
        == 5
    )
    assert (
        segment_detection_watershed(arrays, DetectionWatershedConfig(modality=PHASE, **kw)).max()
        == 4
    )


def test_empty_inputs_give_no_objects():
    truth = scene()
    no_boxes = scene_arrays(truth, np.zeros((0, 4)), np.zeros(0))
    no_boxes["height"] = np.minimum(no_boxes["height"], 1.0)  # no core is seed-high either
    labels = segment_detection_watershed(no_boxes, DetectionWatershedConfig(modality=FLUORESCENCE))
    assert labels.dtype == np.uint32 and labels.shape == truth.shape and not labels.any()
    empty = scene_arrays(np.zeros((30, 30), np.uint32), np.zeros((0, 4)), np.zeros(0))
    assert not segment_detection_watershed(empty).any()
    # boxes but no foreground
    arrays = scene_arrays(truth)
    arrays["foreground"] = np.zeros_like(arrays["foreground"])
    assert not segment_detection_watershed(arrays).any()


def test_mask_is_honoured():
    truth = scene()
    mask = np.ones(truth.shape, bool)
    mask[:, 73:] = False  # cuts the ellipse (4) past its centre, leaves the others whole
    labels = segment_detection_watershed(
        scene_arrays(truth), DetectionWatershedConfig(modality=FLUORESCENCE), mask=mask
    )
    assert not labels[~mask].any()
    assert labels.max() == 4
    kept = truth * mask
    assert_recovers(labels, kept)
    # the mask's edge is no cell border when the cut cell's height is checked
    height = height_from_labels(truth)
    cut_error = height_errors(kept, height)[4]
    assert cut_error > 0.1
    assert height_errors(kept, height, mask=mask)[4] < 0.01 * cut_error


def test_3d_input_is_refused():
    arrays = {
        "foreground": np.zeros((4, 8, 8), np.float32),
        "height": np.zeros((4, 8, 8), np.float32),
        "boxes": np.zeros((0, 4), np.float32),
        "box_scores": np.zeros(0, np.float32),
    }
    with pytest.raises(ValueError, match="2D"):
        segment_detection_watershed(arrays)


# ---------------------------------------------------------------------------------------------
# routing


def test_fluorescence_never_falls_back():
    truth = scene()
    arrays = scene_arrays(truth, flows=True)
    arrays["foreground"] = np.where(truth > 0, 0.6, 0.0).astype(np.float32)  # unsure
    report = choose_route(arrays, DetectionWatershedConfig(modality=FLUORESCENCE))
    assert report["route"] == "detection"
    assert report["quality_detection"] == pytest.approx(0.6)
    assert report["quality_flows"] > 0.6
    assert (report["conf_threshold"], report["nms_iou"]) == MODALITY_THRESHOLDS[FLUORESCENCE]


def test_phase_contrast_falls_back_when_detection_is_unsure():
    truth = scene()
    arrays = scene_arrays(truth, flows=True)
    arrays["foreground"] = np.where(truth > 0, 0.6, 0.0).astype(np.float32)
    config = DetectionWatershedConfig(modality=PHASE, flow_threshold=0.3, min_size=12)
    report = choose_route(arrays, config)
    assert report["route"] == "flows" and "0.600" in report["reason"]
    labels = get_backend("detection_watershed")(arrays, config=config)
    flows = segment_flow_dynamics(
        arrays, FlowDynamicsConfig(mask_threshold=0.0, flow_threshold=0.3, min_size=12)
    )
    np.testing.assert_array_equal(labels, flows)
    # unresolved "auto" counts as phase contrast
    assert choose_route(arrays, {"modality": "auto"})["route"] == "flows"
    assert choose_route(arrays, {"modality": "auto"})["modality"] == PHASE


def test_phase_contrast_fallback_rule():
    truth = scene()
    arrays = scene_arrays(truth, flows=True)
    q_flow = choose_route(arrays)["quality_flows"]
    # detection confident enough and not beaten by more than the margin
    arrays["foreground"] = np.where(truth > 0, q_flow - 0.04, 0.0).astype(np.float32)
    assert choose_route(arrays)["route"] == "detection"
    # beaten by more than the margin (while above fallback_quality)
    arrays["foreground"] = np.where(truth > 0, q_flow - 0.06, 0.0).astype(np.float32)
    assert q_flow - 0.06 > 0.8
    report = choose_route(arrays)
    assert report["route"] == "flows" and "beats" in report["reason"]
    assert choose_route(arrays, {"fallback_margin": 0.1})["route"] == "detection"
    # no flows arrays: nothing to fall back on
    del arrays["flow"], arrays["distance"]
    report = choose_route(arrays)
    assert report["route"] == "detection" and report["quality_flows"] is None


def test_forced_routes():
    truth = scene()
    arrays = scene_arrays(truth, flows=True)
    arrays["foreground"] = np.where(truth > 0, 0.6, 0.0).astype(np.float32)
    assert choose_route(arrays, {"modality": PHASE, "route": "detection"})["route"] == "detection"
    report = choose_route(arrays, {"modality": FLUORESCENCE, "route": "flows"})
    assert report["route"] == "flows" and report["reason"] == "forced"
    labels = segment_detection_watershed(
        arrays, DetectionWatershedConfig(modality=FLUORESCENCE, route="flows")
    )
    flows = segment_flow_dynamics(arrays, FlowDynamicsConfig(flow_threshold=0.4, min_size=10))
    np.testing.assert_array_equal(labels, flows)
    forced = segment_detection_watershed(
        arrays, DetectionWatershedConfig(modality=PHASE, route="detection")
    )
    assert_recovers(forced, truth)
    del arrays["flow"]
    with pytest.raises(ValueError, match="flow"):
        choose_route(arrays, {"route": "flows"})


def test_quality_of_an_empty_foreground_is_zero():
    arrays = scene_arrays(np.zeros((20, 20), np.uint32), np.zeros((0, 4)), np.zeros(0), True)
    report = choose_route(arrays)
    assert report["quality_detection"] == 0.0 and report["quality_flows"] == 0.0


def test_mask_restricts_the_route_qualities():
    truth = scene()
    arrays = scene_arrays(truth, flows=True)
    arrays["foreground"] = np.where(truth == 4, 0.6, arrays["foreground"]).astype(np.float32)
    only_4 = truth == 4
    assert choose_route(arrays, mask=only_4)["quality_detection"] == pytest.approx(0.6)
    assert choose_route(arrays)["quality_detection"] > 0.8


# ---------------------------------------------------------------------------------------------
# config and registry


@pytest.mark.parametrize(
    "bad",
    [
        {"modality": "dic"},
        {"route": "both"},
        {"conf_threshold": 1.5},
        {"nms_iou": -0.1},
        {"t1": -1.0},
        {"min_size": -3},
        {"marker_radius": 1.5},
        {"fallback_quality": 2.0},
    ],
)
def test_config_validation(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        DetectionWatershedConfig(**bad)


def test_registered_backend():
    backend = get_backend("detection_watershed")
    assert backend.fn is segment_detection_watershed
    assert backend.config_type is DetectionWatershedConfig
    assert set(backend.requires) == {"foreground", "height", "boxes", "box_scores"}
    assert get_backend("flow_dynamics").describe is None
    truth = scene()
    arrays = scene_arrays(truth)
    config = DetectionWatershedConfig(modality=BRIGHTFIELD, t1=0.7)
    np.testing.assert_array_equal(
        backend(arrays, config=config),
        segment_detection_watershed(arrays, DetectionWatershedConfig(modality=BRIGHTFIELD, t1=0.7)),
    )
    report = backend.describe(arrays, config)
    assert report["modality"] == BRIGHTFIELD and report["route"] == "detection"
    assert (report["conf_threshold"], report["nms_iou"]) == (0.10, 0.25)
    report = backend.describe(arrays, DetectionWatershedConfig(conf_threshold=0.5, nms_iou=0.6))
    assert (report["conf_threshold"], report["nms_iou"]) == (0.5, 0.6)
    with pytest.raises(ValueError, match="needs arrays"):
        backend({"foreground": arrays["foreground"]})
