"""Fine-tune a trained model from a few annotated objects (SPOCO-style sparse supervision).

The user paints some whole objects (and, optionally, known background) on one or more
images; everything else stays unlabelled and is ignored by the loss of any method whose
``sparse_labels`` is true. A fraction of the annotated objects is held out: the training
never sees them and they score every checkpoint (AP@0.5 on annotated objects only), before
training (the parent model) and after. Below ``MIN_HELD_OUT_OBJECTS`` held-out objects that
score carries no information (one object more or less right moves it by half or more), so it
is reported as "cannot be judged" and the latest checkpoint is published. Half of each
batch (``FinetuneConfig.replay``) comes from the parent's replay set, dense crops of the data
it learnt from (:mod:`~napari_instseg.core.replay`), so that learning the user's objects does
not unlearn everything else. After training, the
parent and the fine-tuned model segment the user's images (the annotated ones and any
unannotated context) and are compared where the user did not annotate
(:func:`compare_with_parent`); a large change is a warning with its reason. The result is
published as a new model next to the user's others, with a card that names its parent, the
annotations it saw (hashes), its knobs (the parent's, with ``merge_distance`` re-chosen by
:func:`refit_merge_distance`), its held-out AP and the comparison with its parent.

Examples
--------
>>> model = load_model("spoco-nuclei")                                        # doctest: +SKIP
>>> job = finetune(model, [AnnotatedImage("cells", image, annotation)],
...                name="spoco-nuclei-mine", run_dir="runs/mine")            # doctest: +SKIP
>>> result = run(job)                                                         # doctest: +SKIP
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated

import numpy as np

from .arrays import InputError
from .assembly import get_backend
from .checkpoint import load_model, save_model
from .configs import config_from_dict
from .data.augment import AugmentConfig
from .data.datasets import Sample
from .data.sparse import annotation_to_labels, annotation_warnings, split_objects
from .jobs import Job, Metric, Progress, stop_requested
from .metrics import iou_matrix, match_instances
from .pipeline import Model, prepare_image, segment_image
from .predict import DEVICES, PredictConfig
from .pseudo_labels import add_pseudo_objects, sure_objects
from .replay import replay_for
from .scale import labels_to_grid, median_diameter, plan_scale, resize_image, scaled_shape
from .train import (
    TRAINABLE,
    TrainConfig,
    TrainResult,
    decode_sample,
    segment_sample,
    train,
    validate,
)


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune; the defaults run at a few iterations per second on 2 CPU cores."""

    # With the replay set in half of each batch, 150 steps at 1e-3 did as well on the stained
    # val images as 300 (embedseg-nuclei, 20 objects: AP@0.5 0.481 vs 0.480) in half the
    # time; without replay 1e-3 cost 0.05-0.07 AP@0.5 on the unannotated objects of images
    # the parent already segments well, and any rate made the stained and fluorescence
    # images worse (docs/transfer.md)
    iterations: Annotated[int, {"min": 1, "max": 100_000, "tooltip": "training steps"}] = 150
    lr: Annotated[
        float,
        {
            "min": 1e-6,
            "max": 1e-1,
            "step": 1e-4,
            "decimals": 6,
            "widget_type": "FloatSpinBox",
            "label": "learning rate",
        },
    ] = 1e-3
    batch_size: Annotated[int, {"min": 1, "max": 64, "widget_type": "SpinBox"}] = 4
    patch_size: Annotated[int, {"min": 32, "max": 1024, "step": 16, "widget_type": "SpinBox"}] = 128
    held_out_fraction: Annotated[
        float,
        {
            "min": 0.0,
            "max": 0.9,
            "step": 0.05,
            "widget_type": "FloatSpinBox",
            "tooltip": "fraction of annotated objects kept out of training to score it",
        },
    ] = 0.2
    # which checkpoint is published when enough objects are held out to judge: the one with
    # the best held-out AP ("best") or the last one ("latest"); with fewer it is the latest.
    # On the stained val images (embedseg-nuclei, 50 objects, 10 held out) the latest did
    # better in every seed but one (mean AP@0.5 0.471 vs 0.440, fluorescence the same): ten
    # held-out objects are too few to pick a checkpoint by (docs/transfer.md)
    publish: Annotated[str, {"choices": ("best", "latest"), "advanced": True}] = "latest"
    # 0 ("keep base model" off) did better on the stained val images at 50 objects (mean
    # AP@0.5 0.490 vs 0.440) and on average on the DSB val crops (+0.124 vs +0.043), but one
    # of those 8 runs lost 0.115 where 1 never lost anything (docs/transfer.md): 1 stays
    anchor_weight: Annotated[
        float,
        {
            "min": 0.0,
            "max": 100.0,
            "widget_type": "FloatSpinBox",
            "label": "keep base model",
            "tooltip": "how strongly the pixels you did not annotate keep the base model's "
            "output (0: free to change)",
        },
    ] = 1.0
    # the anchor weighs in full up to this many annotated objects and as
    # anchor_objects / objects beyond (the evidence outweighs the prior as it grows); 0: the
    # weight is the same for any number of objects (see effective_anchor_weight). 10 gained
    # on the stained val images (50 objects: mean AP@0.5 0.471 vs 0.440) but with 30 objects
    # on DSB val crops four of eight runs lost 0.05-0.25 (docs/transfer.md): off by default
    anchor_objects: Annotated[int, {"min": 0, "max": 10_000, "advanced": True}] = 0
    val_every: Annotated[int, {"min": 1, "max": 10_000, "advanced": True}] = 25
    preview_every: Annotated[
        int,
        {
            "min": 0,
            "max": 10_000,
            "min_text": "off",
            "tooltip": "segment the first image with the current model every N steps",
        },
    ] = 50
    # re-choose the published model's merge_distance (see refit_merge_distance)
    refit_knobs: Annotated[
        bool,
        {
            "label": "re-choose merge distance",
            "tooltip": "after training, pick the merge distance that keeps your objects whole "
            "and apart and the base model's objects elsewhere as they were",
        },
    ] = True
    # keep the parent's merge_distance unless another value reproduces the reference objects
    # better by at least this much mean best IoU (0: the best value wins however small the
    # gain); see choose_merge_distance
    refit_margin: Annotated[float, {"min": 0.0, "max": 1.0, "advanced": True}] = 0.0
    # which objects the merge distance is re-chosen on: the annotations trained on
    # ("annotations"), or, when enough are held out to judge (MIN_HELD_OUT_OBJECTS), the
    # held-out ones, which the network did not memorise ("held-out")
    refit_on: Annotated[str, {"choices": ("annotations", "held-out"), "advanced": True}] = (
        "annotations"
    )
    # re-estimate the network's normalisation statistics on the user's images (annotated and
    # context) before training: see adapt_norm_statistics
    adapt_norm: Annotated[
        bool,
        {
            "label": "adapt to my images",
            "tooltip": "before training, re-estimate the base model's normalisation "
            "statistics on your annotated images and the unannotated images checked below",
        },
    ] = False
    # share of each batch's crops drawn from the parent's replay set (densely annotated crops
    # of the data it learnt from, core/replay.py), when the package has one for it
    replay: Annotated[
        float,
        {
            "min": 0.0,
            "max": 0.9,
            "step": 0.1,
            "widget_type": "FloatSpinBox",
            "label": "replay base data",
            "tooltip": "share of each training batch taken from fully annotated crops of the "
            "data the base model learnt from (shipped with it): keeps what it knew while it "
            "learns your objects (0: your annotations only)",
        },
    ] = 0.5
    # stronger augmentation of the crops (zoom, gamma, blur, noise) so the network learns
    # the objects' appearance rather than the few instances painted
    strong_augment: Annotated[bool, {"advanced": True}] = False
    # segment the user's images with the parent and the fine-tuned model and compare them
    # outside the annotations (compare_with_parent); costs two predictions per image
    compare_parent: Annotated[bool, {"advanced": True}] = True
    # pseudo-labels: the parent's objects that it finds again on the mirrored image at
    # this IoU or better, away from the annotations, are trained on as whole objects, on the
    # annotated images and on any context images (core/pseudo_labels.py); 0: off
    pseudo_labels: Annotated[float, {"min": 0.0, "max": 1.0, "advanced": True}] = 0.0
    # which weights move: "all", "encoder" or "first_block" (TrainConfig.trainable)
    tune: Annotated[
        str,
        {
            "choices": tuple(TRAINABLE),
            "label": "weights trained",
            "tooltip": "which weights learn: all of them; the encoder; or only the first "
            "block, for a new stain or contrast when the objects' shapes are as the base "
            "model knew them",
        },
    ] = "all"
    seed: Annotated[int, {"min": 0, "max": 2**31 - 1, "advanced": True}] = 0
    device: Annotated[str, {"offered": DEVICES}] = "auto"


@dataclass(frozen=True)
class AnnotatedImage:
    """An image as the user has it and its sparse annotation (same spatial shape).

    Annotation ids: 0 = not annotated, ``BACKGROUND_LABEL`` = painted background, any other
    id = one whole object.
    """

    name: str
    image: np.ndarray
    annotation: np.ndarray
    channel_axis: int | None = None


@dataclass(frozen=True)
class UnannotatedImage:
    """Another of the user's images, not annotated (context for fine-tuning, or an image to
    compare the parent and the fine-tuned model on)."""

    name: str
    image: np.ndarray
    channel_axis: int | None = None


#: Fewer held-out objects than this and the held-out AP cannot judge a fine-tune: with 2
#: objects one object turning right or wrong moves it by 0.5 or more (the nuclei sample's
#: "1.000 -> 1.000" while the rest of the image went to specks). With 5 one object still
#: moves it by 0.2-0.33: coarse, but it tells a model that gets most of them from one that
#: gets few. At the default held-out fraction (0.2) that asks for 25 annotated objects, the
#: upper end of what the issue's user paints (10-50), so smaller runs are told to add more.
MIN_HELD_OUT_OBJECTS = 5

#: Thresholds of :func:`comparison_warnings`; see there.
COUNT_CHANGE = 0.5
MIN_AGREEMENT = 0.5
SIZE_CHANGE = 1.4
MIN_COMPARED_OBJECTS = 10


@dataclass(frozen=True)
class FinetuneResult:
    """The published model and how the fine-tune went."""

    model_path: str | None  # card of the published model (None when nothing was trained)
    run: TrainResult
    heldout_before: float  # held-out AP@0.5 of the parent model (nan: nothing held out)
    heldout_after: float  # of the published checkpoint
    warnings: tuple[str, ...] = ()
    refit: dict | None = None  # the re-chosen knobs (card metrics' "knob_refit")
    heldout_objects: int = 0  # how many annotated objects were held out
    comparison: dict | None = None  # compare_with_parent (None: not compared, e.g. stopped)

    @property
    def heldout_judged(self) -> bool:
        """Whether enough objects were held out for the held-out AP to mean something."""
        return self.heldout_objects >= MIN_HELD_OUT_OBJECTS


def annotation_sha256(annotation: np.ndarray) -> str:
    """Checksum of an annotation's ids (shape included) for the model card."""
    arr = np.ascontiguousarray(np.asarray(annotation, dtype=np.uint32))
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.data)
    return h.hexdigest()


def unique_model_name(base: str, taken: set[str] | list[str]) -> str:
    """``base``, or ``base-2``, ``base-3`` ... whichever is not taken yet."""
    taken = set(taken)
    if base not in taken:
        return base
    i = 2
    while f"{base}-{i}" in taken:
        i += 1
    return f"{base}-{i}"


#: Pixels around the held-out objects' bounding box that validation segments: the network
#: sees them with context, and checkpoints are scored without segmenting the whole image
#: (a 1024² image every ``val_every`` steps was a third of a default fine-tune's time).
HELD_OUT_MARGIN = 48


def _bounding_box(mask: np.ndarray, *, margin: int) -> tuple[slice, ...]:
    """Slices of ``mask``'s bounding box grown by ``margin`` (clipped to the array)."""
    where = np.nonzero(mask)
    return tuple(
        slice(max(0, int(w.min()) - margin), min(n, int(w.max()) + 1 + margin))
        for w, n in zip(where, mask.shape, strict=True)
    )


def finetune_augment(config: FinetuneConfig) -> AugmentConfig:
    """Crops centred on annotated objects; with ``strong_augment`` also rescaled, gamma,
    blur and noise."""
    if not config.strong_augment:
        return AugmentConfig(foreground_crop_prob=0.9)
    return AugmentConfig(foreground_crop_prob=0.9, zoom=1.3, gamma=1.4, blur_prob=0.3, noise=0.03)


def effective_anchor_weight(weight: float, objects: int, full_up_to: int) -> float:
    """The "keep base model" weight for ``objects`` annotated objects.

    The anchor is a prior (the parent's outputs where the user did not annotate) and the
    annotations are the evidence; the loss averages over each, so without this the prior
    keeps the same say however much the user annotates. With ``full_up_to`` > 0 the weight
    is ``weight`` up to that many objects and ``weight * full_up_to / objects`` beyond.
    """
    if full_up_to <= 0 or objects <= full_up_to:
        return float(weight)
    return float(weight) * full_up_to / objects


def make_finetune_samples(
    model: Model,
    data: list[AnnotatedImage],
    *,
    held_out_fraction: float,
    rng: np.random.Generator,
    pseudo: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[list[Sample], list[Sample], list[dict]]:
    """Normalised training samples, held-out samples and a record of the annotations.

    Each image keeps ``1 - held_out_fraction`` of its objects (at least one) for training;
    the held-out objects become unknown there and are the labels of its held-out sample.

    Images go through the appearance step as segmenting does, and when the model has a
    working diameter each image is resized so its annotated objects have that size (the
    scale ``diameter="auto"`` will segment the user's images at).

    ``pseudo`` (prepared image -> ``(sure, found)``, see :func:`pseudo_labels.sure_objects`)
    adds the parent's sure objects away from everything annotated or held out to each
    training sample (recorded as ``pseudo_objects``).
    """
    if not data:
        raise InputError("no annotated images: add an annotation with at least one object")
    train_samples, val_samples, record = [], [], []
    for item in data:
        x = prepare_image(model, item.image, channel_axis=item.channel_axis)
        annotation = np.asarray(item.annotation)
        if tuple(annotation.shape) != tuple(x.shape[1:]):
            raise InputError(
                f"{item.name}: annotation shape {annotation.shape} does not match the image's "
                f"spatial shape {tuple(x.shape[1:])}"
            )
        try:
            labels, known = annotation_to_labels(annotation)
        except InputError as err:
            raise InputError(f"{item.name}: {err}") from None
        size = median_diameter([labels])
        factor = plan_scale(size or "off", working_diameter=model.card.working_diameter).factor
        if factor != 1.0 and x.ndim == 3:
            shape = scaled_shape(labels.shape, factor)
            x = resize_image(x, factor)
            labels = labels_to_grid(labels, shape)
            known = labels_to_grid(known.astype(np.uint32), shape) > 0
        kept, held = split_objects(labels, held_out_fraction, rng=rng)
        held_mask = np.isin(labels, held)
        train_labels, train_known, n_pseudo = np.where(held_mask, 0, labels), known & ~held_mask, 0
        if pseudo is not None:
            sure, found = pseudo(x)
            train_labels, train_known, n_pseudo = add_pseudo_objects(
                train_labels, train_known, sure, found, exclude=known
            )
        train_samples.append(Sample(item.name, x, train_labels, train_known))
        if held.size:
            box = _bounding_box(held_mask, margin=HELD_OUT_MARGIN)
            val_samples.append(
                Sample(
                    f"{item.name} (held out)",
                    x[(slice(None), *box)],
                    (labels * held_mask)[box],
                    held_mask[box],
                )
            )
        record.append(
            {
                "image": item.name,
                "annotation_sha256": annotation_sha256(annotation),
                "objects": int(kept.size + held.size),
                "held_out_objects": int(held.size),
                "known_pixels": int(known.sum()),
                "object_diameter": size,
                "scale": factor,
                **({"pseudo_objects": n_pseudo} if pseudo is not None else {}),
            }
        )
    return train_samples, val_samples, record


def adapt_norm_statistics(
    net,
    images: list[np.ndarray],
    *,
    multiple: int = 8,
    patch: int = 256,
    max_patches: int = 64,
    seed: int = 0,
    device: str = "auto",
) -> int:
    """Re-estimate every batch-norm layer's running statistics on the user's images.

    A network trained on one kind of image normalises its features with that kind's
    statistics; on another kind (stained instead of fluorescent nuclei) the features land
    elsewhere. Recomputing the statistics on the new images alone ("AdaBN", Li et al. 2016)
    moves them back without any label. ``images`` are normalised, channel-first, at the scale
    the network sees them; up to ``max_patches`` windows of ``patch`` pixels (whole images
    when smaller, padded to ``multiple``) are passed through the network in evaluation mode
    with only the batch-norm layers collecting statistics (a cumulative average). Nothing
    else changes: weights, a momentum twin and its perturbations stay as they are. Returns
    the number of windows seen (0 when the network has no batch norm or there are no images).
    """
    import torch

    from .predict import select_device

    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or not images:
        return 0
    rng = np.random.default_rng(seed)
    windows = []
    for x in images:
        spatial = x.shape[1:]
        starts = [range(0, max(1, n - patch + 1), patch) for n in spatial]
        for corner in np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(spatial)):
            window = x[(slice(None), *(slice(c, c + patch) for c in corner))]
            pad = [(0, 0)] + [(0, (-n) % multiple) for n in window.shape[1:]]
            windows.append(np.pad(window, pad, mode="reflect"))
    order = rng.permutation(len(windows))[:max_patches]
    dev = select_device(device)
    saved = [(m, m.momentum) for m in norms]
    net.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch
        m.train()
    try:
        with torch.no_grad():
            for i in order:
                net(torch.from_numpy(np.ascontiguousarray(windows[i]))[None].to(dev))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        net.eval()
    return len(order)


def reference_objects(annotated: np.ndarray, parent_labels: np.ndarray, gap: int = 2):
    """The user's objects plus the parent's objects further than ``gap`` px from all of them.

    What a fine-tuned model should reproduce: the annotated objects exactly, and elsewhere
    what the parent found, which the user looked at and left alone.
    """
    kept = objects_away_from(parent_labels, annotated > 0, gap=gap).astype(np.int64)
    kept[kept > 0] += int(annotated.max())
    return np.where(annotated > 0, annotated, kept)


def objects_away_from(labels: np.ndarray, mask: np.ndarray, *, gap: int = 2) -> np.ndarray:
    """``labels`` without the objects that come within ``gap`` px of ``mask``."""
    from scipy import ndimage as ndi

    near = ndi.binary_dilation(mask, iterations=gap) if gap > 0 else mask
    close = np.unique(labels[near])
    return np.where(np.isin(labels, close[close > 0]), 0, labels)


def compare_labels(parent: list[np.ndarray], tuned: list[np.ndarray]) -> dict:
    """How the objects of ``tuned`` differ from those of ``parent`` (label images in pairs).

    Returns ``objects_parent``, ``objects_tuned``, ``diameter_parent`` and ``diameter_tuned``
    (median equivalent diameter, px; None without objects), ``matched`` (parent objects
    matched one to one by a tuned object at IoU >= 0.5) and ``agreement`` (``matched`` over
    ``objects_parent``; None when the parent has none).
    """
    counts = np.zeros(3, int)
    for p, t in zip(parent, tuned, strict=True):
        m = match_instances(p, t, iou_threshold=0.5)
        counts += (m.n_true, m.n_pred, m.tp)
    n_parent, n_tuned, matched = (int(c) for c in counts)
    return {
        "objects_parent": n_parent,
        "objects_tuned": n_tuned,
        "diameter_parent": median_diameter(parent),
        "diameter_tuned": median_diameter(tuned),
        "matched": matched,
        "agreement": matched / n_parent if n_parent else None,
    }


def segment_with_both(
    parent: Model,
    tuned: Model,
    images: list[AnnotatedImage | UnannotatedImage],
    *,
    device: str = "auto",
    stage: str = "compare with the base model",
) -> Job[list[tuple[np.ndarray, np.ndarray]] | None]:
    """Segment each image with ``parent`` and with ``tuned`` the way the user will
    (:func:`~napari_instseg.core.pipeline.segment_image`, appearance and diameter "auto").

    A job: ``Progress(stage, i, len(images))`` before each image, then the prediction's own
    events. Returns ``(parent_labels, tuned_labels)`` per image on its input grid, or None
    on ``Stop``.
    """
    config = PredictConfig(device=device)
    pairs = []
    for i, item in enumerate(images):
        if stop_requested((yield Progress(stage, i, len(images)))):
            return None
        pair = []
        for model in (parent, tuned):
            seg = yield from segment_image(
                model, item.image, config=config, channel_axis=item.channel_axis
            )
            if seg is None:
                return None
            pair.append(seg.labels)
        pairs.append((pair[0], pair[1]))
    yield Progress(stage, len(images), len(images))
    return pairs


def compare_with_parent(
    images: list[AnnotatedImage | UnannotatedImage],
    pairs: list[tuple[np.ndarray, np.ndarray]],
    *,
    gap: int = 2,
) -> dict:
    """Compare the parent's and the fine-tuned model's labels where the user did not annotate.

    On an annotated image, objects of either model within ``gap`` px of any annotated pixel
    (object or painted background) are left out: there the fine-tune was told what to do.
    Elsewhere, and on unannotated images, a fine-tune that carries the user's corrections
    should change some objects, not the whole picture. Returns :func:`compare_labels` over
    all images together, plus ``images``: the same per image with its ``image`` name.
    """
    rows, parents, tuneds = [], [], []
    for item, (p, t) in zip(images, pairs, strict=True):
        annotation = getattr(item, "annotation", None)
        if annotation is not None:
            mask = np.asarray(annotation) > 0
            p, t = objects_away_from(p, mask, gap=gap), objects_away_from(t, mask, gap=gap)
        rows.append({"image": item.name, **compare_labels([p], [t])})
        parents.append(p)
        tuneds.append(t)
    return {**compare_labels(parents, tuneds), "images": rows}


def comparison_warnings(comparison: dict) -> list[str]:
    """Warnings, each with its reason, when the fine-tuned model changes a lot where the user
    did not annotate (``comparison`` from :func:`compare_with_parent`).

    - count: the number of objects changes by more than ``COUNT_CHANGE`` (50 %) of the
      parent's, counted as at least ``MIN_COMPARED_OBJECTS`` (10) so that a few objects more
      or less on a sparse image never warn. A model that learnt from a few corrections and
      then finds twice the objects elsewhere is splitting them or finding specks (95 -> 185
      on the nuclei sample, AP against the truth 0.54 -> 0.37).
    - agreement: fewer than ``MIN_AGREEMENT`` (half) of the parent's objects are found again
      at IoU >= 0.5, with at least ``MIN_COMPARED_OBJECTS`` of them: most of what the user
      saw and left alone has changed.
    - size: the median object diameter changes by more than a factor ``SIZE_CHANGE`` (1.4,
      about twice or half the area) either way, with at least ``MIN_COMPARED_OBJECTS`` parent
      objects: objects merged, split, cut to their cores, or specks among them.

    Thresholds are deliberately loose: fixing a systematic error (merges everywhere) may
    rightly change many objects, so these are warnings for the user to look, not refusals.
    """
    n_parent, n_tuned = comparison["objects_parent"], comparison["objects_tuned"]
    where = "where you did not annotate"
    warnings = []
    if abs(n_tuned - n_parent) > COUNT_CHANGE * max(n_parent, MIN_COMPARED_OBJECTS):
        change = f" ({(n_tuned - n_parent) / n_parent:+.0%})" if n_parent else ""
        guess = "splitting objects or finding specks" if n_tuned > n_parent else "missing objects"
        warnings.append(
            f"{where}, the fine-tuned model finds {n_tuned} objects against the base model's "
            f"{n_parent}{change}: it may be {guess}; look at your other images before using it"
        )
    enough = n_parent >= MIN_COMPARED_OBJECTS
    agreement = comparison["agreement"]
    if enough and agreement < MIN_AGREEMENT:
        warnings.append(
            f"{where}, only {agreement:.0%} of the base model's objects are found again "
            "(IoU >= 0.5): the fine-tune changed most of what you left alone"
        )
    d_parent, d_tuned = comparison["diameter_parent"], comparison["diameter_tuned"]
    if enough and d_tuned and max(d_tuned / d_parent, d_parent / d_tuned) > SIZE_CHANGE:
        kind = "larger (merged objects?)" if d_tuned > d_parent else "smaller (split objects?)"
        warnings.append(
            f"{where}, the median object size went from {d_parent:.1f} to {d_tuned:.1f} px: "
            f"objects became {kind}"
        )
    return warnings


def describe_comparison(comparison: dict | None, *, per_image: bool = False) -> str:
    """One line (and, with ``per_image``, one more per image) saying what
    :func:`compare_with_parent` found ("" when nothing was compared)."""
    if not comparison:
        return ""

    def found(c) -> str:
        if c["agreement"] is None:
            return ""
        return f", {c['agreement']:.0%} of the base model's objects found again (IoU >= 0.5)"

    def size(d) -> str:
        return f"{d:.1f}" if d else "-"

    images = comparison["images"]
    text = (
        f"where you did not annotate ({len(images)} image{'s' if len(images) != 1 else ''}): "
        f"objects {comparison['objects_parent']} -> {comparison['objects_tuned']}, median size "
        f"{size(comparison['diameter_parent'])} -> {size(comparison['diameter_tuned'])} px"
        f"{found(comparison)}"
    )
    if per_image:
        for c in images:
            text += f"\n  {c['image']}: objects {c['objects_parent']} -> {c['objects_tuned']}"
            text += f", {c['agreement']:.0%} found again" if c["agreement"] is not None else ""
    return text


def describe_heldout(result: FinetuneResult, *, held_out_fraction: float) -> str:
    """``"held-out AP@0.5 0.412 -> 0.655 (6 objects)"``, or why it cannot be judged."""
    n = result.heldout_objects
    if result.heldout_judged:
        return (
            f"held-out AP@0.5 {result.heldout_before:.3f} -> {result.heldout_after:.3f} "
            f"({n} objects)"
        )
    if held_out_fraction <= 0:
        return "held-out AP cannot be judged (held-out fraction 0: no objects held out)"
    needed = math.ceil(MIN_HELD_OUT_OBJECTS / held_out_fraction)
    return (
        f"held-out AP cannot be judged ({n} object{'s' if n != 1 else ''} held out; "
        f"annotate at least {needed})"
    )


def choose_merge_distance(
    backend: str,
    knobs: dict,
    decoded: list[dict],
    references: list[np.ndarray],
    *,
    steps: int = 9,
    margin: float = 0.0,
) -> tuple[float, dict[float, float]]:
    """The ``merge_distance`` from 0 to ``knobs``' value that best reproduces ``references``.

    Each candidate assembles every decoded output and is scored by the mean best IoU of the
    reference objects (every object counts once); ties keep the value closest to the
    starting one, and the starting value stays unless the best beats it by ``margin``.
    Returns the value and every candidate's score.
    """
    be = get_backend(backend)
    start = float(knobs["merge_distance"])
    candidates = [round(float(v), 3) for v in np.linspace(0.0, start, steps)]
    scores = {}
    for value in candidates:
        config = config_from_dict(be.config_type, {**knobs, "merge_distance": value}, strict=False)
        best = []
        for ref, dec in zip(references, decoded, strict=True):
            labels = be(dec, config=config, rng=np.random.default_rng(0))
            ious = iou_matrix(ref, labels)[0]
            best.extend(ious.max(axis=1) if ious.shape[1] else np.zeros(ious.shape[0]))
        scores[value] = float(np.mean(best)) if best else 0.0
    top = max(scores.values())
    chosen = min((v for v in candidates if scores[v] >= top - 1e-9), key=lambda v: abs(v - start))
    if scores[candidates[-1]] >= top - margin:
        chosen = candidates[-1]  # the starting value: not clearly worse than the best
    return chosen, scores


def describe_refit(refit: dict | None) -> str:
    """``"merge distance 4 -> 2.5"`` for a result's ``refit`` ("" when nothing was re-chosen)."""
    if not refit or "merge_distance" not in refit:
        return ""
    md = refit["merge_distance"]
    return f"merge distance {md['parent']:g} -> {md['chosen']:g}"


def refit_merge_distance(
    model: Model,
    net,
    samples: list[Sample],
    *,
    backend: str,
    knobs: dict,
    device: str = "auto",
    margin: float = 0.0,
) -> tuple[float, dict[float, float]]:
    """Re-choose ``merge_distance`` for a fine-tuned ``net`` of ``model`` on its training samples.

    Fine-tuning moves the annotated objects away from their unannotated neighbours, but not
    always as far as the parent's ``merge_distance``: at the parent's value the merge step
    joined many corrected objects back to a neighbour (benchmarks/finetune.py). The value is
    chosen by :func:`choose_merge_distance` against the :func:`reference_objects` of each
    sample: the user's objects, and the parent's objects away from them (so that the rest of
    the image does not fall apart into fragments).
    """
    model.net.eval()
    net.eval()
    tuned = replace(model, net=net)
    references, decoded = [], []
    for s in samples:
        parent = segment_sample(model, s.image, device=device, backend=backend, knobs=knobs)
        references.append(reference_objects(s.labels, parent))
        decoded.append(decode_sample(tuned, s.image, device=device))
    return choose_merge_distance(backend, knobs, decoded, references, margin=margin)


def finetune(
    model: Model,
    data: list[AnnotatedImage],
    *,
    name: str,
    run_dir: str | Path,
    models_dir: str | Path | None = None,
    config: FinetuneConfig = FinetuneConfig(),
    preview: np.ndarray | None = None,
    preview_channel_axis: int | None = None,
    resume: bool = False,
    context: list[np.ndarray | UnannotatedImage] | tuple = (),
) -> Job[FinetuneResult]:
    """Fine-tune ``model`` on sparse annotations and publish the result as model ``name``.

    A job: yields the training's events (``Metric('loss')``, ``Metric('val_ap50')`` on the
    held-out objects, ``Progress``, ``Checkpoint``, ``Preview('labels')`` of ``preview``),
    first of all ``Metric('heldout_ap50_before', ap, 0)`` for the parent model and
    ``Metric('heldout_objects', n, 0)``, and stops on ``Stop`` keeping its best and latest
    checkpoints in ``run_dir`` (``resume=True`` continues from there). The best checkpoint
    is then written to ``models_dir`` (default: the user's model folder) as ``name``; with
    fewer than ``MIN_HELD_OUT_OBJECTS`` held-out objects the held-out AP cannot tell
    checkpoints apart and the latest one is written instead (the comparison with the parent
    then says whether it changed too much).

    ``context``: more of the user's images, unannotated (arrays, single-channel or RGB as
    they come, or :class:`UnannotatedImage`), used with ``config.adapt_norm`` to re-estimate
    normalisation statistics, and with ``config.compare_parent`` to compare the parent and
    the fine-tuned model on (as are the annotated images, outside their annotations). A Stop
    during the comparison publishes the model without it.
    """
    from .zoo import user_model_dir

    if not model.method.sparse_labels:
        raise InputError(
            f"method {model.method.name!r} cannot learn from sparse annotations; "
            "pick a SPOCO or EmbedSeg model"
        )
    rng = np.random.default_rng(config.seed)
    device = config.device
    pseudo = None
    if config.pseudo_labels > 0:
        model.net.eval()

        def pseudo(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            parent = functools.partial(segment_sample, model, device=device)
            return sure_objects(x, parent, min_iou=config.pseudo_labels)

    train_samples, val_samples, record = make_finetune_samples(
        model, data, held_out_fraction=config.held_out_fraction, rng=rng, pseudo=pseudo
    )
    annotated_x = [s.image for s in train_samples]
    context = [
        c if isinstance(c, UnannotatedImage) else UnannotatedImage(f"context {i + 1}", c)
        for i, c in enumerate(context)
    ]
    # the context images as the network sees them: appearance step, the annotations' scale
    context_x = []
    if context and (pseudo is not None or (config.adapt_norm and not resume)):
        scale = float(np.median([r["scale"] for r in record]))
        for item in context:
            x = prepare_image(model, item.image, channel_axis=item.channel_axis)
            context_x.append(resize_image(x, scale) if x.ndim == 3 else x)
    pseudo_context = []
    if pseudo is not None:
        for i, (item, x) in enumerate(zip(context, context_x, strict=True)):
            if stop_requested((yield Progress("pseudo-labels", i, len(context)))):
                break
            sure, found = pseudo(x)
            nothing = np.zeros(x.shape[1:], dtype=bool)
            labels, known, n = add_pseudo_objects(
                np.zeros_like(sure), nothing, sure, found, exclude=nothing
            )
            pseudo_context.append({"image": item.name, "pseudo_objects": n})
            if n:
                train_samples.append(Sample(f"{item.name} (pseudo-labels)", x, labels, known))
    n_held = sum(r["held_out_objects"] for r in record)
    judged = n_held >= MIN_HELD_OUT_OBJECTS
    before = float("nan")
    if val_samples:
        model.net.eval()
        before = validate(model, val_samples, device=device)
        yield Metric("heldout_ap50_before", before, 0)
        yield Metric("heldout_objects", n_held, 0)
    start_net, anchor = model.net, getattr(model.net, "f", model.net)
    if config.adapt_norm and not resume:
        start_net = copy.deepcopy(model.net)
        adapt_norm_statistics(
            start_net,
            [*annotated_x, *context_x],
            multiple=model.size_multiple,
            seed=config.seed,
            device=device,
        )
        anchor = getattr(start_net, "f", start_net)
    warnings = annotation_warnings([d.annotation for d in data], names=[d.name for d in data])
    preview_x = None
    if preview is not None:
        try:
            preview_x = prepare_image(model, preview, channel_axis=preview_channel_axis)
        except InputError as err:  # a preview is a nicety: never a reason to fail
            warnings.append(f"no preview: {err}")
    anchor_weight = effective_anchor_weight(
        config.anchor_weight, sum(r["objects"] for r in record), config.anchor_objects
    )
    tconf = TrainConfig(
        iterations=config.iterations,
        batch_size=config.batch_size,
        patch_size=config.patch_size,
        lr=config.lr,
        warmup=max(1, min(20, config.iterations // 10)),
        val_every=config.val_every,
        log_every=5,
        preview_every=config.preview_every,
        anchor_weight=anchor_weight,
        freeze_norm=True,
        replay_share=config.replay,
        trainable=config.tune,
        seed=config.seed,
        device=device,
    )
    sizes = [r["object_diameter"] for r in record if r["object_diameter"]]
    template = replace(
        model.card,
        name=name,
        parent=model.card.name,
        object_size=float(np.median(sizes)) if sizes else model.card.object_size,
        training={
            "data": "sparse annotations made in napari",
            "parent_data": model.card.training.get("data", ""),
            "annotations": record,
            "finetune_config": asdict(config),
            "anchor_weight_used": anchor_weight,
            **({"pseudo_context": pseudo_context} if pseudo_context else {}),
        },
        metrics={"heldout_ap50_before": before},
        versions={},
        created="",
        weights_sha256="",
        weights_dtype="float32",
    )
    result = yield from train(
        model.method,
        model.config,
        train_samples,
        val_samples,
        out_dir=run_dir,
        card=template,
        config=tconf,
        augment=finetune_augment(config),
        init_weights=start_net.state_dict(),
        resume=resume,
        preview_image=preview_x,
        anchor_net=copy.deepcopy(anchor),
        replay_samples=replay_for(model.card) if config.replay > 0 else (),
    )
    pick_best = judged and config.publish == "best"
    source = (result.best_path if pick_best else None) or result.latest_path
    if source is None or not Path(source).exists():
        return FinetuneResult(
            None, result, before, float("nan"), tuple(warnings), heldout_objects=n_held
        )
    card, net = load_model(source)
    refit = {}
    wants_refit = float(card.backend_config.get("merge_distance", 0) or 0) > 0
    if (
        config.refit_knobs
        and wants_refit
        and not stop_requested((yield Progress("choose merge distance", 0, 1)))
    ):
        on_held_out = judged and config.refit_on == "held-out"
        chosen, scores = refit_merge_distance(
            model,
            net,
            val_samples if on_held_out else train_samples,
            backend=card.backend,
            knobs=dict(card.backend_config),
            device=device,
            margin=config.refit_margin,
        )
        refit = {
            "merge_distance": {
                "parent": float(card.backend_config["merge_distance"]),
                "chosen": chosen,
                "on": "held-out" if on_held_out else "annotations",
                "mean_best_iou": {str(k): round(v, 4) for k, v in scores.items()},
            }
        }
        card = replace(card, backend_config={**card.backend_config, "merge_distance": chosen})
        yield Progress("choose merge distance", 1, 1)
    tuned = Model.from_card(card, net)  # the published checkpoint with the published knobs
    after = validate(tuned, val_samples, device=device) if val_samples else float("nan")
    first = segment_sample(tuned, train_samples[0].image, device=device)
    n_objects = int(first.max())
    if n_objects == 0:
        warnings.append(f"the fine-tuned model finds no objects on {train_samples[0].name}")
    if judged and after < before:
        warnings.append(
            f"held-out AP fell from {before:.3f} to {after:.3f}: the parent model does better on "
            "the held-out objects; keep using it, or try a higher 'keep base model' weight"
        )
    comparison = None
    if config.compare_parent:
        images = [*data, *context]
        pairs = yield from segment_with_both(model, tuned, images, device=device)
        if pairs is not None:
            comparison = compare_with_parent(images, pairs)
            warnings.extend(comparison_warnings(comparison))
    card = replace(
        card,
        metrics={
            # the checkpoint's val_ap50 is the best so far, not necessarily this one's
            **{k: v for k, v in card.metrics.items() if k != "val_ap50"},
            "heldout_ap50_before": before,
            "heldout_ap50": after,
            "heldout_objects": n_held,
            "heldout_judged": judged,
            "objects_on_first_image": n_objects,
            "stopped_early": result.stopped,
            **({"knob_refit": refit} if refit else {}),
            **({"parent_comparison": comparison} if comparison else {}),
        },
        weights_sha256="",
    )
    path = save_model(models_dir or user_model_dir(), name, net, card)
    return FinetuneResult(
        str(path),
        result,
        before,
        after,
        tuple(warnings),
        refit or None,
        heldout_objects=n_held,
        comparison=comparison,
    )
