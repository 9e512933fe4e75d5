"""Knob search on cached predictions: every grid point scored, groups weighed equally."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.checkpoint import load_model
from napari_instseg.core.evaluation import predict_samples, score_predictions, tune_knobs
from napari_instseg.core.jobs import run
from napari_instseg.core.methods import get_method
from napari_instseg.core.pipeline import Model
from napari_instseg.core.predict import PredictConfig


@pytest.fixture
def model(tiny_model):
    card_path, _ = tiny_model
    card, net = load_model(card_path)
    return Model.from_card(card, net, source=str(card_path))


def test_tune_knobs_scores_each_group_equally(model, disk_samples):
    samples = disk_samples(4)
    preds = run(predict_samples(model, samples, config=PredictConfig(tile_size=64, halo=8)))
    # Outputs a trained network might give: class logits from the truth, plus noise, so
    # that the knobs change the result.
    rng = np.random.default_rng(0)
    for s, p in zip(samples, preds, strict=True):
        classes = get_method("threeclass").make_targets(s.labels, s.known, model.config)
        onehot = np.eye(3, dtype=np.float32)[classes["classes"]].transpose(2, 0, 1)
        p.raw["classes"] = 3 * onehot + rng.normal(0, 1.5, onehot.shape).astype(np.float32)
    grid = {"fg_threshold": [0.3, 0.5, 0.7], "min_size": [0, 20]}
    groups = ["big", "big", "big", "small"]
    best, best_score, trials = tune_knobs(model, samples, preds, grid, groups=groups)
    assert len(trials) == 6 and best_score == max(score for _, score in trials)
    for knobs, score in trials:
        _, big = score_predictions(model, samples[:3], preds[:3], knobs=knobs)
        _, small = score_predictions(model, samples[3:], preds[3:], knobs=knobs)
        assert score == pytest.approx((big["ap@0.50"] + small["ap@0.50"]) / 2)
    _, plain, plain_trials = tune_knobs(model, samples, preds, grid)
    for (knobs, _), (_, score) in zip(trials, plain_trials, strict=True):
        _, everything = score_predictions(model, samples, preds, knobs=knobs)
        assert score == pytest.approx(everything["ap@0.50"])
    assert np.isfinite(plain)
    assert len({round(score, 6) for _, score in trials}) > 1  # the knobs matter here
