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
    normalisation_statistics,
    predict_image,
    prepare,
    prepare_image,
    prepare_input,
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


# -- one inference path: every caller gives the same labels ---------------------------------
def _nuclei_crop():
    from napari_instseg.core.samples import load_sample

    image, _ = load_sample("nuclei2d_dsb_stardist")  # real DSB fluorescence nuclei, uint16
    return np.asarray(image)[:128, 256:384]


@pytest.mark.slow
def test_every_caller_gives_the_pipelines_labels(tmp_path):
    """The Segment widget and CLI (segment_image), evaluation, training validation, the
    fine-tune's predictions and a blockwise run with one block give identical labels for
    the same image, weights and knobs.

    The shipped All-Cell model routes its thresholds by the image's modality; training
    validation used to leave it at "auto" (read as phase contrast), which on these
    fluorescence nuclei gives other labels (checked below, so the test can tell)."""
    import tifffile
    import zarr
    from distributed import Client

    from _blobs import same_partition
    from napari_instseg.core.data import Sample
    from napari_instseg.core.evaluation import predict_samples, score_predictions
    from napari_instseg.core.finetune import UnannotatedImage, segment_with_both
    from napari_instseg.core.large.engine import segment_large
    from napari_instseg.core.modality import FLUORESCENCE, PHASE
    from napari_instseg.core.pipeline import assemble_decoded, prepare_image
    from napari_instseg.core.train import decode_sample, segment_sample, validate
    from napari_instseg.core.tuning import Tuner

    model = load_pipeline_model("allcell")
    image = _nuclei_crop()
    config = PredictConfig(tile_size=256, halo=32, device="cpu")  # as validation tiles
    seg = run(segment_image(model, image, config=config, diameter="off"))
    reference = seg.labels
    assert reference.max() >= 5 and seg.prediction.info["modality"] == FLUORESCENCE
    phase = run(segment_image(model, image, config=config, knobs={"modality": PHASE}))
    assert not np.array_equal(phase.labels, reference)  # the modality matters here

    x = prepare_image(model, image)
    sample = Sample("crop", x, reference, np.ones(reference.shape, bool))
    (prediction,) = run(predict_samples(model, [sample], config=config))
    assert prediction.info["modality"] == FLUORESCENCE
    np.testing.assert_array_equal(
        Tuner(model, prediction).assemble(model.card.backend).labels, reference
    )
    _, summary = score_predictions(model, [sample], [prediction])
    assert summary["ap@0.50"] == 1.0

    np.testing.assert_array_equal(segment_sample(model, x, device="cpu"), reference)
    assert validate(model, [sample], device="cpu") == 1.0

    # the fine-tune: its references and refit decode, its comparison with the parent
    decoded = decode_sample(model, x, device="cpu")
    np.testing.assert_array_equal(
        assemble_decoded(model, decoded, modality=FLUORESCENCE), reference
    )
    item = UnannotatedImage("crop", image)
    (pair,) = run(segment_with_both(model, model, [item], device="cpu"))
    np.testing.assert_array_equal(pair[0], reference)

    # blockwise: one block covers the image; statistics and modality from its sample
    path = tmp_path / "crop.tif"
    tifffile.imwrite(path, image)
    out = tmp_path / "crop.zarr"
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        result = run(
            segment_large(path, out, model, core=256, diameter="off", predict=config, client=c)
        )
    blockwise = zarr.open_array(str(out), mode="r")[...]
    assert result.n_objects == reference.max()
    assert same_partition(blockwise, reference)


def test_prepare_decides_modality_and_knobs_once(model):
    from napari_instseg.core.modality import FLUORESCENCE, PHASE

    calls = []
    resolve = model.backend_config
    model.backend_config = lambda *a, **kw: calls.append(kw) or resolve(*a, **kw)
    dark = np.zeros((40, 52), np.float32)
    dark[10:20, 10:20] = 100.0  # a bright object on a dark background
    seg = run(segment_image(model, dark, config=CPU, knobs={"min_size": 5}))
    assert len(calls) == 1 and calls[0]["modality"] == FLUORESCENCE
    assert seg.prediction.info["modality"] == FLUORESCENCE and seg.knobs["min_size"] == 5
    # the blockwise engine hands in what it decided for the whole image
    request = prepare(model, dark, statistics=([0.0], [50.0]), modality=PHASE)
    np.testing.assert_array_equal(request.image[0], dark / 50.0)
    assert request.modality == PHASE and request.backend == "watershed"
    # a sample that is the model's input already keeps its values
    x = prepare_image(model, dark)
    sample = prepare_input(model, x)
    assert sample.image is x and sample.modality == FLUORESCENCE


def test_normalisation_kinds_are_read_one_way(model, tmp_path):
    """An unknown kind is refused by every path, the blockwise engine's included (it used
    to treat one as percentiles)."""
    import tifffile

    from napari_instseg.core.large.engine import decide_look
    from napari_instseg.core.large.source import open_source

    x = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    lo, hi = normalisation_statistics(model, x)
    np.testing.assert_allclose([lo[0], hi[0]], np.percentile(x, [1.0, 99.8]))
    plain = dataclasses.replace(
        model, card=dataclasses.replace(model.card, normalisation={"kind": "none"})
    )
    np.testing.assert_array_equal(np.ravel(normalisation_statistics(plain, x)), [0.0, 1.0])
    odd = dataclasses.replace(
        model, card=dataclasses.replace(model.card, normalisation={"kind": "zscore"})
    )
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, _image((64, 64)))
    with pytest.raises(ValueError, match="unknown normalisation 'zscore'"):
        normalisation_statistics(odd, x)
    with pytest.raises(ValueError, match="unknown normalisation 'zscore'"):
        run(decide_look(odd, open_source(path), diameter="off"))
    look = run(decide_look(model, open_source(path), diameter="off"))
    image = _image((64, 64)).astype(np.float32)[None]
    assert look.low == pytest.approx(tuple(normalisation_statistics(model, image)[0]))
