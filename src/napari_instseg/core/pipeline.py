"""From an image to labels with a trained model: the library's one inference path.

Every caller (the Segment widget, the CLI, evaluation, training validation and previews,
fine-tuning, the blockwise workers) takes the same four steps:

1. **prepare** (:func:`prepare`): the image as the model's input, channel-first in the
   appearance it learnt and normalised as its card says, with what is decided about the
   image once: its modality, the back-end and that back-end's knobs (card defaults, the
   caller's knobs, the modality filled in where a knob asks for it). The result is a
   :class:`Request`.
2. **predict** (:func:`predict`): the network over the request's image, resized by a scale
   when asked, in tiles. This module is the only caller of
   :func:`~napari_instseg.core.predict.predict_tiled`.
3. **decode** (:func:`decode`): the method's arrays from the raw outputs.
4. **assemble** (:func:`segment_request`): the back-end with the request's knobs, labels
   mapped back to the input's grid.

Callers differ only in what they hand in. The blockwise engine passes the whole image's
normalisation statistics and modality (decided once on its sample) and its own tile size
per block. Training and evaluation samples are already the model's input
(:func:`prepare_input`).

Examples
--------
>>> model = load_model("threeclass-nuclei")                  # doctest: +SKIP
>>> labels = run(segment_image(model, image)).labels         # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .arrays import InputError
from .assembly import get_backend
from .checkpoint import CheckpointError, ModelCard
from .configs import config_from_dict, config_to_dict, replace_config
from .data.normalise import normalise_with
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
        """What the network's input sides must be a multiple of: 2 ** (number of poolings)."""
        return 2 ** (int(getattr(self.config, "depth", 4)) - 1)

    def backend_config(
        self, backend: str | None = None, knobs: dict | None = None, *, modality: str = ""
    ):
        """The back-end's knob dataclass: card defaults (for its own back-end), then ``knobs``.

        ``backend`` defaults to the card's, else the method's default. A back-end with a
        ``modality`` knob left at "auto" gets ``modality``, the image's modality as
        :func:`~napari_instseg.core.modality.detect_modality` saw it.
        """
        name = backend or self.card.backend or self.method.default_backend
        be = get_backend(name)
        if name not in self.method.backends:
            raise InputError(
                f"back-end {name!r} does not fit method {self.method.name!r}; "
                f"use one of {list(self.method.backends)}"
            )
        base = self.card.backend_config if name == self.card.backend else {}
        cfg = replace_config(config_from_dict(be.config_type, base, strict=False), knobs or {})
        if modality and getattr(cfg, "modality", None) == "auto":
            cfg = replace_config(cfg, {"modality": modality})
        return cfg


@dataclass(frozen=True)
class Request:
    """An image made ready for one model, with everything decided about it once.

    ``image`` is the model's input on the input's grid: ``(C, *spatial)`` float32, in the
    model's appearance, normalised. ``backend_config`` is the back-end's knob dataclass
    with the modality filled in; ``modality`` is the image's (detected on the image as
    given, or handed in by the caller); ``appearance`` is the appearance step taken
    (``Appearance.as_dict()``; empty for a sample that was the model's input already).
    """

    image: np.ndarray = field(repr=False)
    backend: str
    backend_config: Any
    modality: str = ""
    modality_reason: str = ""
    appearance: dict = field(default_factory=dict)


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


# -- 1. prepare --------------------------------------------------------------------------------
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


def normalisation_statistics(model: Model, image_cf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the values that the card's normalisation maps to 0 and 1, measured on
    ``image_cf`` (channel-first, in the model's appearance): its ``low`` and ``high``
    percentiles (kind ``percentile``, the default), or 0 and 1 (kind ``none``).

    The blockwise engine measures them once on a large image's sample and hands them to
    :func:`prepare` for every block. A kind the library does not know raises ``ValueError``:
    guessing would show the network an image it never learnt.
    """
    norm = model.card.normalisation or {}
    kind = norm.get("kind", "percentile")
    x = np.asarray(image_cf, dtype=np.float32)
    if kind == "none":
        return np.zeros(x.shape[0], np.float32), np.ones(x.shape[0], np.float32)
    if kind != "percentile":
        raise CheckpointError(
            f"unknown normalisation {kind!r} on the card of model {model.card.name!r}; "
            "this version knows 'percentile' and 'none'"
        )
    flat = x.reshape(x.shape[0], -1)
    lo, hi = np.percentile(flat, [norm.get("low", 1.0), norm.get("high", 99.8)], axis=1)
    return lo, hi


def normalise_for(model: Model, image_cf: np.ndarray) -> np.ndarray:
    """Normalise a channel-first image the way the model's card says, with its own
    statistics."""
    return normalise_with(image_cf, *normalisation_statistics(model, image_cf))


def _model_input(model, image, *, channel_axis, appearance, background=None, statistics=None):
    x, how = adapt_image(
        model, image, channel_axis=channel_axis, appearance=appearance, background=background
    )
    lo, hi = normalisation_statistics(model, x) if statistics is None else statistics
    return normalise_with(x, lo, hi), how


def prepare_image(
    model: Model, image: np.ndarray, *, channel_axis: int | None = None, appearance: str = "auto"
) -> np.ndarray:
    """Channel-first float32 image in the model's appearance, checked against the model card
    and normalised as it says (:func:`prepare`'s image, without the rest of a request)."""
    return _model_input(model, image, channel_axis=channel_axis, appearance=appearance)[0]


def prepare(
    model: Model,
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    appearance: str = "auto",
    background=None,
    statistics: tuple | None = None,
    modality: str | None = None,
    backend: str | None = None,
    knobs: dict | None = None,
) -> Request:
    """An image as the model's input, with its modality, back-end and knobs decided once.

    Parameters
    ----------
    model : Model
    image : ndarray
        As the user has it: any dtype, colour or not (see :func:`adapt_image`).
    channel_axis, appearance, background
        How to read the image and which appearance to show the model (:func:`adapt_image`).
    statistics : (low, high), optional
        Per-channel values mapped to 0 and 1 (:func:`normalisation_statistics` of a larger
        image, as the blockwise engine passes them); default: measured on this image.
    modality : str, optional
        The image's modality when decided elsewhere (a large image's, for each of its
        blocks; "" for none); default: detected on ``image``
        (:func:`~napari_instseg.core.modality.detect_modality`, on the raw intensities).
    backend, knobs
        The assembly back-end (default: the card's) and knobs over the card's defaults.

    Raises
    ------
    InputError, CheckpointError, ValueError
        For an image the model cannot take, an unknown normalisation, or bad knobs.
    """
    from .modality import detect_modality

    x, how = _model_input(
        model,
        image,
        channel_axis=channel_axis,
        appearance=appearance,
        background=background,
        statistics=statistics,
    )
    if modality is None:
        looks = detect_modality(image, channel_axis=channel_axis)
        modality, reason = looks.modality, looks.reason
    else:
        reason = "decided for the whole image" if modality else ""
    return _request(model, x, backend, knobs, modality, reason, how.as_dict())


def prepare_input(
    model: Model,
    image_cf: np.ndarray,
    *,
    modality: str | None = None,
    backend: str | None = None,
    knobs: dict | None = None,
) -> Request:
    """A request for an image that is the model's input already (channel-first, in the
    model's appearance, normalised), as training, validation and evaluation samples are.

    Its modality is detected on it unless given: the modality rule rescales intensities by
    their own percentiles, so a normalised image gives the raw image's answer.
    """
    from .modality import detect_modality

    model.card.check_input(image_cf)
    reason = ""
    if modality is None:
        looks = detect_modality(image_cf, channel_axis=0)
        modality, reason = looks.modality, looks.reason
    return _request(model, image_cf, backend, knobs, modality, reason, {})


def _request(model, x, backend, knobs, modality, reason, appearance) -> Request:
    name = backend or model.card.backend or model.method.default_backend
    cfg = model.backend_config(name, knobs, modality=modality)
    return Request(x, name, cfg, modality, reason, appearance)


# -- 2. predict --------------------------------------------------------------------------------
def predict(
    model: Model, request: Request, *, config: PredictConfig = PredictConfig(), scale: float = 1.0
) -> Job[Prediction | None]:
    """Run the model's network over the request's image, resized by ``scale``, in tiles (a
    stoppable job; None when stopped).

    The prediction is on the resized grid; its ``info`` keeps what maps it back (the
    input's spatial shape ``input_shape`` and ``scale``), the appearance step taken and the
    image's modality, and how it was tiled.
    """
    from .scale import resize_image

    t0 = time.perf_counter()
    raw = yield from predict_tiled(
        model.net,
        resize_image(request.image, scale),
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
            "modality": request.modality,
            "modality_reason": request.modality_reason,
            "appearance": dict(request.appearance),
            "scale": float(scale),
            "input_shape": tuple(int(n) for n in request.image.shape[1:]),
        },
    )


def predict_image(
    model: Model,
    image: np.ndarray,
    *,
    config: PredictConfig = PredictConfig(),
    channel_axis: int | None = None,
    appearance: str = "auto",
    scale: float = 1.0,
) -> Job[Prediction | None]:
    """:func:`prepare` then :func:`predict`: the raw outputs for an image as the user has it."""
    request = prepare(model, image, channel_axis=channel_axis, appearance=appearance)
    return (yield from predict(model, request, config=config, scale=scale))


# -- 3. decode ---------------------------------------------------------------------------------
def decode(model: Model, prediction: Prediction, *, origin: tuple[int, ...] = ()) -> dict:
    """The method's decoded arrays (the back-ends' input) from a prediction.

    ``origin`` (input pixels) is where the image sits in a larger one: grid-based back-ends
    (the mutex watershed's strides) count from there, so blocks of a large image agree.
    """
    decoded = model.method.decode(prediction.raw, model.config)
    if origin:
        scale = float(prediction.info.get("scale", 1.0))
        decoded["origin"] = np.round(np.asarray(origin) * scale).astype(np.int64)
    return decoded


# -- 4. assemble -------------------------------------------------------------------------------
def _run_backend(name: str, config, intermediate: dict, mask=None) -> np.ndarray:
    """The one place a back-end runs for a model (fixed ``rng``: same knobs, same labels)."""
    return get_backend(name)(intermediate, mask=mask, config=config, rng=np.random.default_rng(0))


def _describe(name: str, config, intermediate: dict) -> dict:
    be = get_backend(name)
    return {} if be.describe is None else be.describe(intermediate, config)


def on_input_grid(prediction: Prediction, labels: np.ndarray) -> np.ndarray:
    """Labels assembled on a prediction's (possibly resized) grid, on the input image's grid
    (:func:`~napari_instseg.core.scale.labels_to_grid`: every object kept)."""
    from .scale import labels_to_grid

    shape = prediction.info.get("input_shape")
    if shape is None or tuple(shape) == labels.shape:
        return labels
    return labels_to_grid(labels, tuple(shape))


def assemble(
    model: Model,
    prediction: Prediction,
    *,
    backend: str | None = None,
    knobs: dict | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Labels from a cached prediction with the chosen back-end and knobs (no network)."""
    labels = assemble_decoded(
        model,
        decode(model, prediction),
        backend=backend,
        knobs=knobs,
        mask=mask,
        modality=prediction.info.get("modality", ""),
    )
    return on_input_grid(prediction, labels)


def assemble_decoded(
    model: Model,
    intermediate: dict,
    *,
    backend: str | None = None,
    knobs: dict | None = None,
    mask: np.ndarray | None = None,
    modality: str = "",
) -> np.ndarray:
    """Labels from already-decoded arrays with other knobs than a request's (live tuning)."""
    name = backend or model.card.backend or model.method.default_backend
    cfg = model.backend_config(name, knobs, modality=modality)
    return _run_backend(name, cfg, intermediate, mask)


def assembly_report(
    model: Model,
    intermediate: dict,
    *,
    backend: str | None = None,
    knobs: dict | None = None,
    modality: str = "",
) -> dict:
    """What the back-end decided for these arrays and knobs ({} for back-ends that just run)."""
    name = backend or model.card.backend or model.method.default_backend
    return _describe(name, model.backend_config(name, knobs, modality=modality), intermediate)


def segment_request(
    model: Model,
    request: Request,
    *,
    config: PredictConfig = PredictConfig(),
    scale: float = 1.0,
    origin: tuple[int, ...] = (),
) -> Job[Segmentation | None]:
    """Predict, decode and assemble a prepared request in one stoppable job (one pass at
    ``scale``); labels on the input's grid, None when stopped."""
    seg = yield from _segment_at(model, request, config, scale, origin)
    if seg is None:
        return None
    prediction, intermediate, _, labels, seconds = seg
    return _segmentation(request, prediction, intermediate, labels, seconds)


def segment_input(
    model: Model,
    image_cf: np.ndarray,
    *,
    config: PredictConfig = PredictConfig(),
    backend: str | None = None,
    knobs: dict | None = None,
) -> Job[Segmentation | None]:
    """:func:`prepare_input` then :func:`segment_request`: a sample that is the model's
    input already (training validation and previews, fine-tuning)."""
    request = prepare_input(model, image_cf, backend=backend, knobs=knobs)
    return (yield from segment_request(model, request, config=config))


def _segment_at(model, request, config, scale, origin=()):
    """One pass at ``scale``: prediction, decoded arrays, labels on its grid and on the
    input's grid, seconds."""
    t0 = time.perf_counter()
    prediction = yield from predict(model, request, config=config, scale=scale)
    if prediction is None:
        return None
    t1 = time.perf_counter()
    intermediate = decode(model, prediction, origin=origin)
    labels_model = _run_backend(request.backend, request.backend_config, intermediate)
    labels = on_input_grid(prediction, labels_model)
    t2 = time.perf_counter()
    return prediction, intermediate, labels_model, labels, {"predict": t1 - t0, "assemble": t2 - t1}


def _segmentation(request, prediction, intermediate, labels, seconds) -> Segmentation:
    return Segmentation(
        labels=labels,
        prediction=prediction,
        backend=request.backend,
        knobs=config_to_dict(request.backend_config),
        seconds={**seconds, "total": sum(seconds.values())},
        report=_describe(request.backend, request.backend_config, intermediate),
        intermediate=intermediate,
    )


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
    """Prepare, predict and assemble in one stoppable job; labels on the input's grid.

    ``diameter`` is the objects' diameter in input pixels, ``"auto"`` to estimate it, or
    ``"off"`` for the native scale. With a diameter the image is resized so its objects have
    the card's ``working_diameter``, or, when that is a ``[low, high]`` range, only as far as
    it takes to bring them inside it (:mod:`~napari_instseg.core.scale`). ``"auto"`` starts
    from a quick estimate on the image (trusted only to shrink: a first pass is never larger
    than the input), measures the objects the model then finds, and predicts once more when
    that measure asks for a scale more than 20 % away. ``prediction.info["diameter"]`` says
    what was estimated and used.
    """
    from .scale import AUTO_TOLERANCE, check_diameter, estimate_diameter, plan_scale

    t0 = time.perf_counter()
    request = prepare(
        model, image, channel_axis=channel_axis, appearance=appearance, backend=backend, knobs=knobs
    )
    x = request.image
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
        seg = yield from _segment_at(model, request, config, plan.factor)
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
    prediction.info["diameter"] = {**plan.as_dict(), "passes": passes}
    seg = _segmentation(request, prediction, intermediate, labels, seconds)
    return replace(seg, seconds={**seconds, "total": time.perf_counter() - t0})
