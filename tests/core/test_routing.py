"""Modality routing through the pipeline: the image's modality picks the All-Cell Segmenter's
thresholds and fallback, and the route taken is reported with the labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_instseg.core.assembly.detection import MODALITY_THRESHOLDS
from napari_instseg.core.data import load_folder, normalise_percentile
from napari_instseg.core.data.datasets import read_image
from napari_instseg.core.evaluation import predict_samples
from napari_instseg.core.jobs import run
from napari_instseg.core.modality import FLUORESCENCE, PHASE, detect_modality
from napari_instseg.core.pipeline import load_model, segment_image
from napari_instseg.core.tuning import Tuner

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture
def allcell_tiny(tmp_path, save_tiny_allcell):
    return load_model(str(save_tiny_allcell(tmp_path)))


def fluorescence_like(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(10, 2, (64, 64))
    yy, xx = np.mgrid[:64, :64]
    for cy, cx in ((16, 16), (40, 44), (20, 48)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 49] += 200
    return image.astype(np.float32)


def phase_like(seed=0):
    rng = np.random.default_rng(seed)
    image = 120 + rng.normal(0, 15, (64, 64))
    yy, xx = np.mgrid[:64, :64]
    ring = np.abs(np.hypot(yy - 32, xx - 32) - 12) < 2
    image[ring] -= 60
    image[(yy - 32) ** 2 + (xx - 32) ** 2 < 100] += 40
    return image.astype(np.float32)


def test_fluorescence_image_takes_the_detection_route_with_its_thresholds(allcell_tiny):
    result = run(segment_image(allcell_tiny, fluorescence_like()))
    report = result.report
    assert result.prediction.info["modality"] == FLUORESCENCE
    assert report["modality"] == FLUORESCENCE and report["route"] == "detection"
    assert (report["conf_threshold"], report["nms_iou"]) == MODALITY_THRESHOLDS[FLUORESCENCE]
    assert result.knobs["modality"] == FLUORESCENCE  # resolved from "auto"


def test_phase_image_may_fall_back_and_a_knob_forces_the_route(allcell_tiny):
    result = run(segment_image(allcell_tiny, phase_like()))
    assert result.report["modality"] == PHASE
    assert (result.report["conf_threshold"], result.report["nms_iou"]) == MODALITY_THRESHOLDS[PHASE]
    assert result.report["route"] in ("detection", "flows")
    assert result.report["quality_flows"] is not None
    forced = run(segment_image(allcell_tiny, phase_like(), knobs={"route": "flows"}))
    assert forced.report["route"] == "flows"
    # An explicit modality knob wins over what the image looks like.
    told = run(segment_image(allcell_tiny, phase_like(), knobs={"modality": FLUORESCENCE}))
    assert told.report["modality"] == FLUORESCENCE and told.report["route"] == "detection"


def test_live_tuning_reports_the_route_and_keeps_auto_in_its_knobs(allcell_tiny):
    result = run(segment_image(allcell_tiny, fluorescence_like()))
    tuner = Tuner(allcell_tiny, result.prediction)
    tuned = tuner.assemble("detection_watershed", {"t1": 0.6})
    assert tuned.report["modality"] == FLUORESCENCE
    assert tuned.knobs["modality"] == "auto"  # what the user set, reproducible elsewhere
    np.testing.assert_array_equal(tuner.assemble("detection_watershed", {}).labels, result.labels)


def test_the_flows_back_end_runs_on_the_same_cached_prediction(allcell_tiny):
    result = run(segment_image(allcell_tiny, phase_like()))
    labels = Tuner(allcell_tiny, result.prediction).assemble("flow_dynamics", {}).labels
    assert labels.shape == (64, 64)


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize(
    ("dataset", "modality"), [("dsb2018_fluo", FLUORESCENCE), ("usiigaci_phase", PHASE)]
)
def test_evaluation_routes_real_images_like_the_raw_image(dataset, modality, allcell_tiny):
    """Routing on both datasets: the raw image and the normalised sample the evaluation
    predicts from are told apart the same way (normalisation is affine, the rule is not),
    and the route report follows."""
    samples = load_folder(DATA / dataset, split="test", normalise=normalise_percentile)[:2]
    predictions = run(predict_samples(allcell_tiny, samples))
    for s, prediction in zip(samples, predictions, strict=True):
        raw = read_image(DATA / dataset / "images" / f"{s.name}.tif")
        assert detect_modality(raw).modality == modality
        assert prediction.info["modality"] == modality
        report = Tuner(allcell_tiny, prediction).assemble("detection_watershed").report
        assert report["modality"] == modality
        if modality == FLUORESCENCE:
            assert report["route"] == "detection"
