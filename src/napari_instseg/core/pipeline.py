"""From an image to labels with a trained model: normalise, predict, decode, assemble.

Examples
--------
>>> model = load_model("threeclass-nuclei")                  # doctest: +SKIP
>>> labels = run(segment_image(model, image))                # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .assembly import get_backend
from .checkpoint import ModelCard
from .configs import config_from_dict, replace_config
from .data.normalise import normalise_percentile
from .jobs import Job
from .methods import Method, get_method
from .predict import PredictConfig, Prediction, predict_tiled
from .scale import median_diameter


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
    #: The decoded network output (the back-end's input) on the prediction's grid, for a
    #: :class:`~napari_instseg.core.tuning.Tuner` that should not decode it again.
    intermediate: dict[str, Any] = field(default_factory=dict, repr=False)


def load_model(name_or_path: str) -> Model:
    """Load a shipped model by name, or a model from its card / weights path."""
    from .zoo import find_model

    card, net = find_model(name_or_path)
    return Model.from_card(card, net, source=str(name_or_path))


def adapt_image(
    model: Model,
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    appearance: str = "auto",
    background=None,
):
    """``(image_cf, how)``: the image read as the model's channel-first input, in the
    appearance it learnt (colour to one channel, dark-on-bright inverted or unmixed; see
    :mod:`~napari_instseg.core.appearance`), checked against the card, not yet normalised.
    ``background`` fixes ``stain``'s ``I0`` (default: the image's own)."""
    from .appearance import to_model_input

    image_cf, how = to_model_input(
        image,
        ndim=model.card.ndim,
        in_channels=model.card.in_channels,
        channel_axis=channel_axis,
        appearance=appearance,
        trained_on=model.card.modality,
        background=background,
    )
    model.card.check_input(image_cf)
    return image_cf, how


def normalise_for(model: Model, image_cf: np.ndarray) -> np.ndarray:
    """Normalise a channel-first image the way the model's card says."""
    norm = model.card.normalisation or {}
    if norm.get("kind", "percentile") == "percentile":
        return normalise_percentile(image_cf, low=norm.get("low", 1.0), high=norm.get("high", 99.8))
    if norm.get("kind") == "none":
        return image_cf
    raise ValueError(f"unknown normalisation {norm.get('kind')!r} on the model card")


def prepare_image(
    model: Model, image: np.ndarray, *, channel_axis: int | None = None, appearance: str = "auto"
):
    """Channel-first float32 image in the model's appearance, checked against the model card
    and normalised as it says."""
    image_cf, _ = adapt_image(model, image, channel_axis=channel_axis, appearance=appearance)
    return normalise_for(model, image_cf)


def predict_image(
    model: Model,
    image: np.ndarray,
    *,
    config: PredictConfig = PredictConfig(),
    channel_axis: int | None = None,
    appearance: str = "auto",
    scale: float = 1.0,
) -> Job[Prediction | None]:
    """Adapt and normalise ``image``, resize it by ``scale`` and run the model's network over
    it in tiles (a stoppable job).

    The prediction is on the resized grid; its ``info`` keeps what maps it back: the input's
    spatial shape (``input_shape``) and ``scale``, and also the appearance step taken and the
    image's modality (from its raw intensities, which normalisation loses).
    """
    x, how = adapt_image(model, image, channel_axis=channel_axis, appearance=appearance)
    x = normalise_for(model, x)
    return (yield from _predict_prepared(model, image, x, how, config, channel_axis, scale))


def _predict_prepared(model, image, x, how, config, channel_axis, scale):
    from .modality import detect_modality
    from .scale import resize_image

    looks = detect_modality(image, channel_axis=channel_axis)
    t0 = time.perf_counter()
    raw = yield from predict_tiled(
        model.net,
        resize_image(x, scale),
        config=config,
        multiple=model.size_multiple,
        head_kinds=model.method.head_kinds,
    )
    if raw is None:
        return None
    spatial = next(iter(raw.values())).shape[1:]
    return Prediction(
        raw=raw,
        image_shape=tuple(spatial),
        model=model.card.name,
        method=model.method.name,
        info={
            "seconds": time.perf_counter() - t0,
            "tile_size": config.tile_size,
            "halo": config.halo,
            "tta": config.tta,
            "modality": looks.modality,
            "modality_reason": looks.reason,
            "appearance": how.as_dict(),
            "scale": float(scale),
            "input_shape": tuple(int(n) for n in x.shape[1:]),
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
    labels = assemble_decoded(
        model,
        intermediate,
        backend=backend,
        knobs=knobs,
        mask=mask,
        modality=prediction.info.get("modality", ""),
    )
    return on_input_grid(prediction, labels)


def on_input_grid(prediction: Prediction, labels: np.ndarray) -> np.ndarray:
    """Labels assembled on a prediction's (possibly resized) grid, on the input image's grid
    (:func:`~napari_instseg.core.scale.labels_to_grid`: every object kept)."""
    from .scale import labels_to_grid

    shape = prediction.info.get("input_shape")
    if shape is None or tuple(shape) == labels.shape:
        return labels
    return labels_to_grid(labels, tuple(shape))


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


def describe_look(info: dict) -> str:
    """One line for the diameter and appearance a segmentation used (a prediction's ``info``,
    or any dict with those keys), as the CLI, the widget and the blockwise engine say it."""
    from dataclasses import fields

    from .appearance import Appearance
    from .scale import ScalePlan

    parts = []
    for key, kind in (("diameter", ScalePlan), ("appearance", Appearance)):
        if info.get(key):
            known = {f.name for f in fields(kind)}
            parts.append(kind(**{k: v for k, v in info[key].items() if k in known}).text())
    return "; ".join(parts)


def segment_image(
    model: Model,
    image: np.ndarray,
    *,
    config: PredictConfig = PredictConfig(),
    backend: str | None = None,
    knobs: dict | None = None,
    channel_axis: int | None = None,
    appearance: str = "auto",
    diameter: float | str | None = "auto",
) -> Job[Segmentation | None]:
    """Adapt, predict and assemble in one stoppable job; labels on the input's grid.

    ``diameter`` is the objects' diameter in input pixels, ``"auto"`` to estimate it, or
    ``"off"`` for the native scale. With a diameter the image is resized so its objects have
    the card's ``working_diameter``, or, when that is a ``[low, high]`` range, only as far as
    it takes to bring them inside it (:mod:`~napari_instseg.core.scale`). ``"auto"`` starts
    from a quick estimate on the image (trusted only to shrink: a first pass is never larger
    than the input), measures the objects the model then finds, and predicts once more when
    that measure asks for a scale more than 20 % away. ``prediction.info["diameter"]`` says
    what was estimated and used.
    """
    from .configs import config_to_dict
    from .scale import AUTO_TOLERANCE, check_diameter, estimate_diameter, plan_scale

    t0 = time.perf_counter()
    name = backend or model.card.backend
    model.backend_config(name, knobs)  # refuse bad knobs before any work
    x, how = adapt_image(model, image, channel_axis=channel_axis, appearance=appearance)
    x = normalise_for(model, x)
    spatial = tuple(x.shape[1:])
    diameter = check_diameter(diameter, spatial)
    working = model.card.working_diameter
    auto = diameter == "auto" and bool(working) and len(spatial) == 2
    if auto:
        seed = estimate_diameter(x)
        first = plan_scale(seed.diameter or "off", working_diameter=working)
        plan = replace(first, factor=min(first.factor, 1.0), source="auto")
        if seed.diameter is None:
            plan = replace(plan, note=f"{seed.reason}: started at the model's scale")
    else:
        plan = plan_scale(diameter, working_diameter=working, image_shape=spatial)
    passes = []
    seconds = {"estimate": time.perf_counter() - t0, "predict": 0.0, "assemble": 0.0}
    while True:
        seg = yield from _segment_at(model, image, x, how, config, channel_axis, plan, name, knobs)
        if seg is None:
            return None
        prediction, intermediate, labels_model, labels, secs = seg
        for key, value in secs.items():
            seconds[key] += value
        if not auto:
            break
        measured = median_diameter([labels_model])
        passes.append({"factor": plan.factor, "measured": measured and measured / plan.factor})
        if not measured:
            plan = replace(plan, note="the model found no objects: kept this scale")
            break
        found = plan_scale(measured / plan.factor, working_diameter=working)
        close = abs(found.factor / plan.factor - 1.0) <= AUTO_TOLERANCE
        if close or len(passes) >= 2:
            plan = replace(plan, diameter=found.diameter)
            break
        plan = replace(found, source="auto")
    t1 = time.perf_counter()
    prediction.info["diameter"] = {**plan.as_dict(), "passes": passes}
    modality = prediction.info.get("modality", "")
    return Segmentation(
        labels=labels,
        prediction=prediction,
        backend=name,
        knobs=config_to_dict(model.backend_config(name, knobs, modality=modality)),
        seconds={**seconds, "total": t1 - t0},
        report=assembly_report(model, intermediate, backend=name, knobs=knobs, modality=modality),
        intermediate=intermediate,
    )


def _segment_at(model, image, x, how, config, channel_axis, plan, name, knobs):
    """One pass at ``plan.factor``: prediction, labels on its grid and on the input grid."""
    t0 = time.perf_counter()
    prediction = yield from _predict_prepared(
        model, image, x, how, config, channel_axis, plan.factor
    )
    if prediction is None:
        return None
    t1 = time.perf_counter()
    modality = prediction.info.get("modality", "")
    intermediate = model.method.decode(prediction.raw, model.config)
    labels_model = assemble_decoded(
        model, intermediate, backend=name, knobs=knobs, modality=modality
    )
    labels = on_input_grid(prediction, labels_model)
    secs = {"predict": t1 - t0, "assemble": time.perf_counter() - t1}
    return prediction, intermediate, labels_model, labels, secs
