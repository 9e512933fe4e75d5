"""From an image to labels with a trained model: normalise, predict, decode, assemble.

Examples
--------
>>> model = load_model("threeclass-nuclei")                  # doctest: +SKIP
>>> labels = run(segment_image(model, image))                # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arrays import as_channel_first
from .assembly import get_backend
from .checkpoint import ModelCard
from .configs import config_from_dict, replace_config
from .data.normalise import normalise_percentile
from .jobs import Job
from .methods import Method, get_method
from .predict import PredictConfig, Prediction, predict_tiled


@dataclass
class Model:
    """A loaded model: its card, network (eval mode), method and method config."""

    card: ModelCard
    net: Any
    method: Method
    config: Any
    source: str = ""

    @classmethod
    def from_card(cls, card: ModelCard, net, source: str = "") -> Model:
        method = get_method(card.method)
        return cls(
            card, net, method, config_from_dict(method.config_type, card.method_config), source
        )

    @property
    def size_multiple(self) -> int:
        return 2 ** (int(getattr(self.config, "depth", 4)) - 1)

    def backend_config(
        self, backend: str | None = None, knobs: dict | None = None, *, modality: str = ""
    ):
        """The back-end's knob dataclass: card defaults (for its own back-end), then ``knobs``.

        A back-end with a ``modality`` knob left at "auto" gets ``modality``, the image's
        modality as :func:`~napari_instseg.core.modality.detect_modality` saw it.
        """
        name = backend or self.card.backend
        be = get_backend(name)
        if name not in self.method.backends:
            raise ValueError(
                f"back-end {name!r} does not fit method {self.method.name!r}; "
                f"use one of {list(self.method.backends)}"
            )
        base = self.card.backend_config if name == self.card.backend else {}
        cfg = replace_config(config_from_dict(be.config_type, base, strict=False), knobs or {})
        if modality and getattr(cfg, "modality", None) == "auto":
            cfg = replace_config(cfg, {"modality": modality})
        return cfg


@dataclass(frozen=True)
class Segmentation:
    """Labels with everything needed to re-assemble them or to say how they were made."""

    labels: np.ndarray
    prediction: Prediction
    backend: str
    knobs: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: How the back-end decided (e.g. the modality and route of ``detection_watershed``).
    report: dict[str, Any] = field(default_factory=dict)


def load_model(name_or_path: str) -> Model:
    """Load a shipped model by name, or a model from its card / weights path."""
    from .zoo import find_model

    card, net = find_model(name_or_path)
    return Model.from_card(card, net, source=str(name_or_path))


def prepare_image(model: Model, image: np.ndarray, *, channel_axis: int | None = None):
    """Channel-first float32 image, checked against the model card and normalised as it says."""
    image_cf = as_channel_first(image, ndim=model.card.ndim, channel_axis=channel_axis)
    model.card.check_input(image_cf)
    norm = model.card.normalisation or {}
    if norm.get("kind", "percentile") == "percentile":
        return normalise_percentile(image_cf, low=norm.get("low", 1.0), high=norm.get("high", 99.8))
    if norm.get("kind") == "none":
        return image_cf
    raise ValueError(f"unknown normalisation {norm.get('kind')!r} on the model card")


def predict_image(
    model: Model,
    image: np.ndarray,
    *,
    config: PredictConfig = PredictConfig(),
    channel_axis: int | None = None,
) -> Job[Prediction | None]:
    """Normalise ``image`` and run the model's network over it in tiles (a stoppable job).

    The prediction's ``info`` also keeps the image's modality (from its raw intensities,
    which normalisation loses) for back-ends whose knobs depend on it.
    """
    from .modality import detect_modality

    x = prepare_image(model, image, channel_axis=channel_axis)
    looks = detect_modality(image, channel_axis=channel_axis)
    t0 = time.perf_counter()
    raw = yield from predict_tiled(
        model.net,
        x,
        config=config,
        multiple=model.size_multiple,
        head_kinds=model.method.head_kinds,
    )
    if raw is None:
        return None
    return Prediction(
        raw=raw,
        image_shape=tuple(x.shape[1:]),
        model=model.card.name,
        method=model.method.name,
        info={
            "seconds": time.perf_counter() - t0,
            "tile_size": config.tile_size,
            "halo": config.halo,
            "tta": config.tta,
            "modality": looks.modality,
            "modality_reason": looks.reason,
        },
    )


def assemble(
    model: Model,
    prediction: Prediction,
    *,
    backend: str | None = None,
    knobs: dict | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Labels from a cached prediction with the chosen back-end and knobs (no network)."""
    intermediate = model.method.decode(prediction.raw, model.config)
    return assemble_decoded(
        model,
        intermediate,
        backend=backend,
        knobs=knobs,
        mask=mask,
        modality=prediction.info.get("modality", ""),
    )


def assemble_decoded(
    model: Model,
    intermediate: dict,
    *,
    backend: str | None = None,
    knobs: dict | None = None,
    mask: np.ndarray | None = None,
    modality: str = "",
) -> np.ndarray:
    """Labels from already-decoded arrays: the one place a back-end runs with a model's knobs."""
    name = backend or model.card.backend
    cfg = model.backend_config(name, knobs, modality=modality)
    return get_backend(name)(intermediate, mask=mask, config=cfg, rng=np.random.default_rng(0))


def assembly_report(
    model: Model,
    intermediate: dict,
    *,
    backend: str | None = None,
    knobs: dict | None = None,
    modality: str = "",
) -> dict:
    """What the back-end decided for these arrays and knobs ({} for back-ends that just run)."""
    name = backend or model.card.backend
    be = get_backend(name)
    if be.describe is None:
        return {}
    return be.describe(intermediate, model.backend_config(name, knobs, modality=modality))


def segment_image(
    model: Model,
    image: np.ndarray,
    *,
    config: PredictConfig = PredictConfig(),
    backend: str | None = None,
    knobs: dict | None = None,
    channel_axis: int | None = None,
) -> Job[Segmentation | None]:
    """Predict and assemble in one stoppable job."""
    t0 = time.perf_counter()
    prediction = yield from predict_image(model, image, config=config, channel_axis=channel_axis)
    if prediction is None:
        return None
    t1 = time.perf_counter()
    name = backend or model.card.backend
    modality = prediction.info.get("modality", "")
    intermediate = model.method.decode(prediction.raw, model.config)
    labels = assemble_decoded(model, intermediate, backend=name, knobs=knobs, modality=modality)
    t2 = time.perf_counter()
    from .configs import config_to_dict

    return Segmentation(
        labels=labels,
        prediction=prediction,
        backend=name,
        knobs=config_to_dict(model.backend_config(name, knobs, modality=modality)),
        seconds={"predict": t1 - t0, "assemble": t2 - t1},
        report=assembly_report(model, intermediate, backend=name, knobs=knobs, modality=modality),
    )
