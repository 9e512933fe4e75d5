"""Tests for napari_instseg.core.pipeline: image -> prediction -> labels with a saved model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_instseg.core.arrays import InputError
from napari_instseg.core.assembly.watershed import ComponentsConfig, WatershedConfig
from napari_instseg.core.checkpoint import CheckpointError, load_model, read_card
from napari_instseg.core.jobs import Progress, run
from napari_instseg.core.pipeline import (
    Model,
    Segmentation,
    assemble,
    predict_image,
    prepare_image,
    segment_image,
)
from napari_instseg.core.pipeline import (
    load_model as load_pipeline_model,
)
from napari_instseg.core.predict import PredictConfig, Prediction

CPU = PredictConfig(tile_size=32, halo=8, device="cpu")


@pytest.fixture
def model(tiny_model):
    card_path, _ = tiny_model
    card, net = load_model(card_path)
    return Model.from_card(card, net, source=str(card_path))


def _image(shape=(40, 52), seed=0):
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(np.uint16)


def test_from_card(model):
    assert model.method.name == "threeclass"
    assert model.config.depth == 2 and model.config.width == 4
    assert model.size_multiple == 2


def test_predict_image_returns_raw_outputs_of_the_image_size(model):
    events = []
    prediction = run(predict_image(model, _image(), config=CPU), events.append)
    assert isinstance(prediction, Prediction)
    assert prediction.raw["classes"].shape == (3, 40, 52)
    assert prediction.image_shape == (40, 52)
    assert prediction.model == "tiny" and prediction.method == "threeclass"
    assert events and all(isinstance(e, Progress) for e in events)
    assert events[-1].step == events[-1].total


def test_predict_image_is_the_network_on_the_normalised_image(model):
    image = _image((32, 32))
    prediction = run(predict_image(model, image, config=PredictConfig(512, 0, "cpu")))
    x = prepare_image(model, image)
    with torch.no_grad():
        expected = model.net(torch.from_numpy(x)[None])["classes"][0].numpy()
    np.testing.assert_allclose(prediction.raw["classes"], expected, rtol=1e-5, atol=1e-5)


def test_prepare_image_normalises_as_the_card_says(model):
    x = prepare_image(model, np.arange(100, dtype=np.float32).reshape(10, 10))
    assert x.shape == (1, 10, 10)
    lo, hi = np.percentile(np.arange(100), [1.0, 99.8])
    np.testing.assert_allclose(x[0, 5, 5], (55 - lo) / (hi - lo), rtol=1e-5)
    raw = dataclasses.replace(
        model, card=dataclasses.replace(model.card, normalisation={"kind": "none"})
    )
    np.testing.assert_array_equal(prepare_image(raw, np.full((4, 4), 7.0))[0], 7.0)
    odd = dataclasses.replace(
        model, card=dataclasses.replace(model.card, normalisation={"kind": "zscore"})
    )
    with pytest.raises(ValueError, match="zscore"):
        prepare_image(odd, np.zeros((4, 4)))


def test_prepare_image_refuses_wrong_inputs(model):
    with pytest.raises(InputError):
        prepare_image(model, np.zeros((4, 8, 8)))  # 3D image for a 2D model
    with pytest.raises(CheckpointError, match="channel"):
        prepare_image(model, np.zeros((2, 8, 8)), channel_axis=0)


def test_assemble_uses_the_cached_prediction(model):
    prediction = run(predict_image(model, _image(), config=CPU))
    labels = assemble(model, prediction)
    assert labels.shape == (40, 52) and labels.dtype == np.uint32
    # a synthetic prediction with a known answer: two confident squares
    logits = np.full((3, 40, 52), -10.0, np.float32)
    logits[0] = 10.0
    for box in ((slice(5, 15), slice(5, 15)), (slice(20, 35), slice(30, 45))):
        logits[(0, *box)] = -10.0
        logits[(1, *box)] = 10.0
    fake = Prediction(raw={"classes": logits}, image_shape=(40, 52))
    for backend in ("watershed", "components"):
        labels = assemble(model, fake, backend=backend, knobs={"min_size": 5})
        assert labels.max() == 2, backend
        assert set(np.unique(labels[5:15, 5:15])) == {labels[10, 10]}
    mask = np.zeros((40, 52), bool)
    mask[:20] = True
    labels = assemble(model, fake, mask=mask)
    assert labels.max() == 1 and not labels[20:].any()


def test_segment_image_returns_labels_of_the_image_shape(model):
    seg = run(segment_image(model, _image((37, 45)), config=CPU))
    assert isinstance(seg, Segmentation)
    assert seg.labels.shape == (37, 45) and seg.labels.dtype == np.uint32
    assert seg.backend == "watershed"
    assert seg.knobs["min_size"] == 3  # from the card's backend_config
    assert set(seg.seconds) == {"estimate", "predict", "assemble", "total"}
    ids = np.unique(seg.labels)
    np.testing.assert_array_equal(ids[ids > 0], np.arange(1, seg.labels.max() + 1))


def test_segment_image_stop_returns_none(model):
    result = run(segment_image(model, _image((64, 64)), config=CPU), should_stop=lambda: True)
    assert result is None


def test_backend_config_defaults_and_knobs(model):
    assert model.backend_config() == WatershedConfig(min_size=3)  # card default
    assert model.backend_config("watershed", {"fg_threshold": "0.3"}) == WatershedConfig(
        fg_threshold=0.3, min_size=3
    )
    # the card's knobs belong to its own back-end only
    assert model.backend_config("components") == ComponentsConfig()


def test_backend_config_refuses_unknown_knobs(model):
    with pytest.raises(ValueError, match="unknown option.*fg_treshold"):
        model.backend_config("watershed", {"fg_treshold": 0.3})
    with pytest.raises(ValueError, match="min_size: expected int"):
        model.backend_config("watershed", {"min_size": "big"})


def test_backend_config_refuses_unknown_or_unfit_backends(model):
    with pytest.raises(ValueError, match="unknown back-end"):
        model.backend_config("nope")
    narrow = dataclasses.replace(model.method, backends=("watershed",))
    picky = dataclasses.replace(model, method=narrow)
    with pytest.raises(ValueError, match="does not fit method 'threeclass'"):
        picky.backend_config("components")


def test_load_model_by_path(tiny_model):
    card_path, _ = tiny_model
    model = load_pipeline_model(str(card_path))
    assert model.card == read_card(card_path)
    assert model.source == str(card_path)


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (1, 200), (9, 70)])
def test_tiny_and_thin_images_segment_to_their_own_shape(model, shape):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    result = run(segment_image(model, image))
    assert result.labels.shape == shape and result.labels.dtype == np.uint32
