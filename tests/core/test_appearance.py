"""Appearance: colour, bit depth, dark-on-bright images mapped into what a model learnt."""

import numpy as np
import pytest

from napari_instseg.core.appearance import bright_background, stain_density, to_model_input
from napari_instseg.core.arrays import InputError
from napari_instseg.core.jobs import run
from napari_instseg.core.metrics import average_precision_dsb
from napari_instseg.core.pipeline import load_model, segment_image


def test_grey_fluorescence_passes_as_it_is(stained):
    x, how = to_model_input(stained.nuclei_sample(), ndim=2, in_channels=1)
    assert x.shape == (1, 256, 256) and how.mode == "as-is" and not how.colour
    assert np.array_equal(x[0], stained.nuclei_sample())


def test_dark_on_bright_grey_is_inverted_for_a_fluorescence_model_only(stained):
    dark = 255 - stained.nuclei_sample()
    x, how = to_model_input(dark, ndim=2, in_channels=1, trained_on="fluorescence")
    assert how.mode == "invert" and "bright background" in how.reason
    assert np.corrcoef(x[0].ravel(), stained.nuclei_sample().ravel())[0, 1] > 0.99
    _, how = to_model_input(dark, ndim=2, in_channels=1, trained_on="phase-contrast")
    assert how.mode == "as-is"
    assert bright_background(dark)[0] and not bright_background(stained.nuclei_sample())[0]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_stained_colour_is_unmixed_at_any_bit_depth(dtype, stained):
    rgb = stained.stained_like(stained.nuclei_sample(), dtype)
    x, how = to_model_input(rgb, ndim=2, in_channels=1)
    assert how.mode == "stain" and how.colour
    assert np.corrcoef(x[0].ravel(), stained.nuclei_sample().ravel())[0, 1] > 0.9
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), rgb.max(), dtype)], axis=-1)
    y, how_a = to_model_input(rgba, ndim=2, in_channels=1)
    assert how_a.mode == "stain" and np.allclose(x, y)


def test_fluorescence_saved_as_rgb_is_not_inverted(stained):
    fluo = stained.nuclei_sample()
    rgb = np.stack([np.zeros_like(fluo), fluo, np.zeros_like(fluo)], -1).astype(np.uint8)
    _, how = to_model_input(rgb, ndim=2, in_channels=1)
    assert how.mode == "as-is" and "fluorescence" in how.reason
    grey_rgb = np.repeat(fluo[..., None], 3, -1)
    x, how = to_model_input(grey_rgb, ndim=2, in_channels=1)
    assert how.mode == "as-is"


def test_forced_modes_and_refusals(stained):
    rgb = stained.stained_like(stained.nuclei_sample())
    x, how = to_model_input(rgb, ndim=2, in_channels=1, appearance="invert")
    assert how.mode == "invert" and how.asked == "invert"
    with pytest.raises(InputError, match="colour"):
        to_model_input(stained.nuclei_sample(), ndim=2, in_channels=1, appearance="stain")
    with pytest.raises(InputError, match="2 channels"):
        to_model_input(np.zeros((32, 32, 2), np.uint8), ndim=2, in_channels=1)
    with pytest.raises(InputError, match="appearance"):
        to_model_input(stained.nuclei_sample(), ndim=2, in_channels=1, appearance="sepia")


def test_stain_density_is_zero_on_the_background():
    rgb = np.full((8, 8, 3), 240, np.uint8)
    rgb[2:4, 2:4] = (80, 40, 150)
    h = stain_density(rgb)
    assert abs(h[0, 0]) < 1e-6 and h[3, 3] > 0.3


@pytest.fixture(scope="module")
def model():
    return load_model("embedseg-nuclei")


def test_segment_image_finds_the_same_nuclei_in_stained_and_inverted_copies(model, stained):
    fluo = stained.nuclei_sample()
    ref = run(segment_image(model, fluo, diameter="off")).labels
    assert ref.max() > 20
    for image, mode in (
        (stained.stained_like(fluo), "stain"),
        ((255 - fluo).astype(np.uint8), "invert"),
    ):
        seg = run(segment_image(model, image, diameter="off"))
        assert seg.prediction.info["appearance"]["mode"] == mode
        assert seg.labels.shape == fluo.shape
        assert average_precision_dsb(ref, seg.labels, iou_threshold=0.5) > 0.6
        plain = run(segment_image(model, image, diameter="off", appearance="as-is")).labels
        assert average_precision_dsb(ref, plain, iou_threshold=0.5) < 0.3
