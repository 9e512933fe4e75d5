"""Evaluate a model on labelled samples, and tune its post-processing knobs on cached predictions.

Predictions are computed once; every knob setting is then scored by re-running only the
assembly back-end, which is what makes a grid search over knobs affordable on a CPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .data.datasets import Sample
from .jobs import Job, Progress, run, stop_requested
from .metrics import evaluate_pair, summarise
from .pipeline import Model, predict, prepare_input
from .predict import PredictConfig, Prediction
from .tuning import Tuner

AP_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def predict_samples(
    model: Model, samples: Sequence[Sample], *, config: PredictConfig = PredictConfig()
) -> Job[list[Prediction] | None]:
    """Predictions for samples that are the model's input already (normalised), one
    ``Progress`` event per image, through the pipeline
    (:func:`~napari_instseg.core.pipeline.prepare_input`, then
    :func:`~napari_instseg.core.pipeline.predict`): each keeps the image's modality in its
    ``info``, as a segmentation does.
    """
    out = []
    for i, s in enumerate(samples):
        request = prepare_input(model, s.image)
        out.append(run(predict(model, request, config=config)))
        command = yield Progress("evaluate", i + 1, len(samples))
        if stop_requested(command):
            return None
    return out


def score_predictions(
    model: Model,
    samples: Sequence[Sample],
    predictions: Sequence[Prediction],
    *,
    backend: str | None = None,
    knobs: Mapping[str, Any] | None = None,
    thresholds: Sequence[float] = AP_THRESHOLDS,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per-image metric rows and their mean for one back-end setting."""
    tuners = [Tuner(model, p) for p in predictions]
    return _score(tuners, samples, backend, knobs, thresholds)


def _score(tuners, samples, backend, knobs, thresholds):
    rows = {}
    for s, tuner in zip(samples, tuners, strict=True):
        labels = tuner.assemble(backend or tuner.model.card.backend, dict(knobs or {})).labels
        rows[s.name] = evaluate_pair(s.labels, labels, thresholds=tuple(thresholds))
    return rows, summarise(list(rows.values()))


def tune_knobs(
    model: Model,
    samples: Sequence[Sample],
    predictions: Sequence[Prediction],
    grid: Mapping[str, Sequence[Any]],
    *,
    backend: str | None = None,
    objective: str = "ap@0.50",
    groups: Sequence[str] | None = None,
) -> tuple[dict[str, Any], float, list[tuple[dict[str, Any], float]]]:
    """Exhaustive search of ``grid`` for the knobs maximising the mean ``objective``.

    With ``groups`` (one name per sample, e.g. its dataset) the score is the mean over groups
    of each group's mean, so a small dataset weighs as much as a large one.

    Returns
    -------
    best_knobs, best_score, all (knobs, score) pairs in grid order
    """
    names = list(grid)
    tuners = [Tuner(model, p) for p in predictions]  # decode once for every trial
    thresholds = (0.5,) if objective == "ap@0.50" else AP_THRESHOLDS
    groups = list(groups) if groups is not None else ["all"] * len(samples)
    members = {g: [i for i, h in enumerate(groups) if h == g] for g in dict.fromkeys(groups)}
    trials = []
    for values in itertools.product(*(grid[n] for n in names)):
        knobs = dict(zip(names, values, strict=True))
        means = []
        for idx in members.values():
            group_tuners, group_samples = [tuners[i] for i in idx], [samples[i] for i in idx]
            _, summary = _score(group_tuners, group_samples, backend, knobs, thresholds)
            means.append(summary[objective])
        trials.append((knobs, float(np.mean(means))))
    best_knobs, best_score = max(trials, key=lambda t: t[1])
    return best_knobs, best_score, trials


def metrics_for_card(summary: Mapping[str, float], thresholds=AP_THRESHOLDS) -> dict[str, float]:
    """The subset of a summary that goes on a model card, rounded for reading."""
    keys = [f"ap@{t:.2f}" for t in thresholds] + ["map@0.50:0.95", "f1@0.50", "f1_challenge", "sbd"]
    out = {k: round(float(summary[k]), 4) for k in keys if k in summary}
    out["n_images"] = int(summary.get("n_images", 0))
    return out
