"""Object size: measuring, estimating, resizing and mapping labels back."""

from dataclasses import replace

import numpy as np
import pytest

from napari_instseg.core.arrays import InputError
from napari_instseg.core.jobs import run
from napari_instseg.core.pipeline import load_model, segment_image
from napari_instseg.core.scale import (
    AUTO_TOLERANCE,
    check_diameter,
    equivalent_diameters,
    estimate_diameter,
    labels_to_grid,
    median_diameter,
    plan_scale,
    resize_image,
    target_diameter,
)


def discs(shape, centres, radius, value=1.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint32)
    for i, (cy, cx) in enumerate(centres, start=1):
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        out[inside] = value
        labels[inside] = i
    return out, labels


def grid_centres(shape, step, margin):
    return [
        (y, x)
        for y in range(margin, shape[0] - margin, step)
        for x in range(margin, shape[1] - margin, step)
    ]


def test_equivalent_and_median_diameter():
    _, labels = discs((100, 100), [(30, 30), (70, 70)], 10)
    d = equivalent_diameters(labels)
    assert d.shape == (2,)
    assert np.allclose(d, 2 * np.sqrt((labels == 1).sum() / np.pi))
    assert median_diameter([labels, labels]) == pytest.approx(d[0])
    assert median_diameter([np.zeros((5, 5), np.uint32)]) is None


@pytest.mark.parametrize("radius", [5, 9, 16])
def test_quick_estimate_follows_the_disc_size(radius):
    shape = (256, 256)
    image, labels = discs(shape, grid_centres(shape, 4 * radius, 2 * radius), radius)
    est = estimate_diameter(image + 0.05 * np.random.default_rng(0).random(shape))
    true = median_diameter([labels])
    # calibrated on real nuclei (ellipses): discs come out ~15 % large, never far off
    assert 0.95 * true < est.diameter < 1.35 * true


def test_quick_estimate_says_when_nothing_stands_out():
    est = estimate_diameter(np.zeros((64, 64), np.float32))
    assert est.diameter is None and "no objects" in est.reason


def test_check_diameter_refuses_bad_values():
    assert check_diameter("auto") == "auto" and check_diameter("OFF") == "off"
    assert check_diameter("12.5") == 12.5
    for bad in (0, -3, float("nan"), "abc", float("inf")):
        with pytest.raises(InputError):
            check_diameter(bad)
    with pytest.raises(InputError, match="larger than the image"):
        check_diameter(300, (256, 256))


def test_a_working_range_keeps_sizes_inside_it():
    assert target_diameter(30.0, [13.0, 29.0]) == 29.0
    assert target_diameter(20.0, [13.0, 29.0]) == 20.0 and target_diameter(20.0, 17.0) == 17.0
    assert plan_scale(20.0, working_diameter=[13.0, 29.0]).factor == 1.0
    assert plan_scale(58.0, working_diameter=[13.0, 29.0]).factor == 0.5
    assert plan_scale(6.5, working_diameter=[13.0, 29.0]).factor == 2.0
    # a range with a centre: outside objects go to the centre, not to the nearest end
    assert target_diameter(20.0, [13.0, 19.0, 29.0]) == 20.0
    assert target_diameter(57.0, [13.0, 19.0, 29.0]) == 19.0
    assert plan_scale(57.0, working_diameter=[13.0, 19.0, 29.0]).factor == 0.3333
    assert plan_scale(9.5, working_diameter=[13.0, 19.0, 29.0]).factor == 2.0


def test_plan_scale_factors_and_fallbacks():
    assert plan_scale(40.0, working_diameter=20.0).factor == 0.5
    assert plan_scale("off", working_diameter=20.0).factor == 1.0
    assert plan_scale(20.5, working_diameter=20.0).factor == 1.0  # not worth a resize
    far = plan_scale(1.0, working_diameter=20.0)
    assert far.factor == 4.0 and "limited" in far.note
    none = plan_scale("auto", working_diameter=None)
    assert none.factor == 1.0 and "no working diameter" in none.note


def test_auto_on_an_image_without_objects_keeps_the_models_scale(nuclei_model):
    seg = run(segment_image(nuclei_model, np.zeros((64, 64), np.float32)))
    plan = seg.prediction.info["diameter"]
    assert plan["factor"] == 1.0 and "kept this scale" in plan["note"]


@pytest.mark.parametrize("factor", [0.3, 0.5, 0.77, 1.6, 2.0, 3.0])
def test_labels_round_trip_keeps_every_object(factor):
    rng = np.random.default_rng(1)
    shape = (97, 131)
    labels = np.zeros(shape, np.uint32)
    # touching rectangles of many sizes, down to single pixels
    n = 0
    for y in range(0, shape[0], 7):
        for x in range(0, shape[1], 9):
            h, w = rng.integers(1, 8), rng.integers(1, 10)
            n += 1
            labels[y : y + h, x : x + w] = n
    present = set(np.unique(labels)) - {0}
    small = labels_to_grid(labels, tuple(int(round(s * factor)) for s in shape))
    back = labels_to_grid(small, shape)
    assert back.shape == shape
    assert set(np.unique(small)) - {0} == present  # nothing lost on the way there ...
    assert set(np.unique(back)) - {0} == present  # ... nor back
    # no merge: each id's pixels in the result come from where that id was
    overlap = back[labels > 0] == labels[labels > 0]
    assert overlap.mean() > (0.6 if factor < 1 else 0.95)


def test_resize_image_shapes():
    x = np.random.default_rng(0).random((1, 40, 60)).astype(np.float32)
    assert resize_image(x, 0.5).shape == (1, 20, 30)
    assert resize_image(x, 2.0).shape == (1, 80, 120)
    assert resize_image(x, 1.0) is x


@pytest.fixture(scope="module")
def nuclei_model():
    model = load_model("embedseg-nuclei")
    model.card = replace(model.card, working_diameter=20.0)
    return model


def blurred_discs(radius, shape=(256, 256)):
    from scipy import ndimage as ndi

    image, labels = discs(shape, grid_centres(shape, int(3.2 * radius), int(1.6 * radius)), radius)
    return ndi.gaussian_filter(image, 1.0) * 200 + 10, labels


@pytest.mark.parametrize("radius", [6, 22])
def test_auto_diameter_measures_synthetic_discs(nuclei_model, radius):
    image, labels = blurred_discs(radius)
    seg = run(segment_image(nuclei_model, image, diameter="auto"))
    plan = seg.prediction.info["diameter"]
    true = median_diameter([labels])
    assert plan["source"] == "auto"
    assert abs(plan["diameter"] / true - 1) <= 0.15
    assert plan["factor"] == pytest.approx(20.0 / plan["diameter"], rel=AUTO_TOLERANCE)
    assert seg.labels.shape == image.shape
    assert abs(int(seg.labels.max()) - int(labels.max())) <= 0.1 * labels.max()


def test_given_diameter_resizes_and_maps_back(nuclei_model):
    image, labels = blurred_discs(20)
    seg = run(segment_image(nuclei_model, image, diameter=40))
    info = seg.prediction.info
    assert info["diameter"]["factor"] == 0.5 and info["diameter"]["source"] == "given"
    assert info["input_shape"] == image.shape
    assert seg.prediction.image_shape == (128, 128)
    assert seg.labels.shape == image.shape
    off = run(segment_image(nuclei_model, image, diameter="off"))
    assert off.prediction.info["diameter"]["factor"] == 1.0


def test_tuning_a_resized_prediction_stays_on_the_input_grid(nuclei_model):
    from napari_instseg.core.tuning import Tuner

    image, _ = blurred_discs(20)
    seg = run(segment_image(nuclei_model, image, diameter=40))
    result = Tuner(nuclei_model, seg.prediction).assemble("seeds", {"fg_threshold": 0.6})
    assert result.labels.shape == image.shape
