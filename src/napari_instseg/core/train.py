"""One training loop for every method: AdamW, cosine schedule, validation, safe checkpoints.

``train`` is a job: it yields ``Metric`` (loss, validation AP), ``Progress`` and ``Checkpoint``
events and stops cleanly on ``Stop`` after writing the latest checkpoint. Checkpoints are
written atomically as ``best`` (highest validation AP@0.5) and ``latest`` (weights + optimizer
state for ``resume``), each as safetensors + JSON, so nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated

import numpy as np

from .checkpoint import ModelCard, load_state, load_weights, save_model, save_state
from .configs import check_ranges, config_to_dict
from .data.augment import AugmentConfig, augment_sample, random_crop
from .data.datasets import Sample
from .jobs import Checkpoint, Job, Metric, Preview, Progress, run, stop_requested
from .methods import Method
from .metrics import average_precision_annotated, average_precision_dsb
from .pipeline import Model, decode, predict, prepare_input, segment_input
from .predict import PredictConfig, select_device

#: ``TrainConfig.trainable`` -> the UNet modules trained (matched anywhere in a parameter's
#: dotted name, so a momentum pair's ``f.encoders.0`` counts). "first_block": the input
#: block only, the smallest change (the "surgical" fine-tuning of Lee et al. 2022 for an
#: input-level shift; on the stained nuclei it kept fluorescence best but learnt too little
#: of the stain, docs/transfer.md); "encoder": every encoder block; "all": everything.
TRAINABLE = {"all": None, "encoder": ("encoders.",), "first_block": ("encoders.0.",)}


@dataclass(frozen=True)
class TrainConfig:
    """How to train; defaults suit a small UNet on a CPU."""

    iterations: Annotated[int, {"min": 1, "max": 1_000_000}] = 2000
    batch_size: Annotated[int, {"min": 1, "max": 256}] = 8
    patch_size: Annotated[int, {"min": 16, "max": 2048}] = 128
    lr: Annotated[float, {"min": 0.0, "max": 1.0}] = 2e-3
    weight_decay: Annotated[float, {"min": 0.0, "max": 1.0}] = 1e-4
    warmup: Annotated[int, {"min": 0, "max": 1_000_000}] = 50
    val_every: Annotated[int, {"min": 1, "max": 1_000_000}] = 250
    log_every: Annotated[int, {"min": 1, "max": 1_000_000}] = 10
    # steps between Preview events (0 = none; needs a preview image)
    preview_every: Annotated[int, {"min": 0, "max": 1_000_000}] = 0
    # pull towards a frozen reference net on unknown pixels
    anchor_weight: Annotated[float, {"min": 0.0, "max": 1e4}] = 0.0
    freeze_norm: bool = False  # keep normalisation statistics as they are (fine-tuning)
    # share of each batch's crops drawn from ``replay_samples``
    replay_share: Annotated[float, {"min": 0.0, "max": 1.0}] = 0.0
    # which weights the optimiser moves (see TRAINABLE); the others keep their values
    trainable: Annotated[str, {"choices": tuple(TRAINABLE)}] = "all"
    seed: int = 0
    device: str = "auto"
    amp: bool = True


def trainable_parameters(net, part: str) -> list:
    """The parameters of ``net`` that ``part`` (a ``TRAINABLE`` key) trains; the others get
    ``requires_grad = False`` (no gradient kept for them)."""
    prefixes = TRAINABLE[part]
    chosen = []
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        if prefixes is None or any(f".{k}" in f".{name}" for k in prefixes):
            chosen.append(p)
        else:
            p.requires_grad_(False)
    if not chosen:
        raise ValueError(f"trainable = {part!r} matches no parameter of this network")
    return chosen


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoints are and how training ended."""

    out_dir: str
    best_path: str | None
    latest_path: str | None
    best_metric: float
    iterations_done: int
    stopped: bool
    history: dict


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _make_batch(method, cfg, samples, train_cfg, rng, augment, replay=()):
    import torch

    nd = samples[0].labels.ndim
    size = (train_cfg.patch_size,) * nd
    images, targets, knowns = [], [], []
    for _ in range(train_cfg.batch_size):
        pool = samples
        if replay and rng.random() < train_cfg.replay_share:
            pool = replay
        s = pool[int(rng.integers(len(pool)))]
        img, lab, known = random_crop(
            s.image,
            s.labels,
            s.known,
            size,
            rng=rng,
            foreground_prob=augment.foreground_crop_prob,
            zoom=augment.zoom,
        )
        img, lab, known = augment_sample(img, lab, known, config=augment, rng=rng)
        images.append(img)
        knowns.append(known)
        targets.append(method.make_targets(lab, known, cfg))
    batch = {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}
    return torch.from_numpy(np.stack(images)), batch, torch.from_numpy(np.stack(knowns))


def _train_mode(net, config: TrainConfig) -> None:
    """Training mode; with ``freeze_norm`` the batch-norm layers stay in evaluation mode.

    Fine-tuning sees a few crops of one or two images: their batch statistics would replace
    the running statistics learnt on the whole training set and shift the network's output
    everywhere, annotated or not.
    """
    import torch

    net.train()
    if config.freeze_norm:
        for module in net.modules():
            if isinstance(
                module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d | torch.nn.BatchNorm3d
            ):
                module.eval()


def anchor_term(outputs: dict, reference: dict, known):
    """Distance of the outputs from a frozen reference network's on the unknown pixels.

    Fine-tuning from a few annotated objects would otherwise let everything the user did
    not annotate drift away from what the parent model got right ("learning without
    forgetting", Li & Hoiem 2017). Huber distance per channel, averaged over the unknown
    pixels and the heads both networks have.
    """
    import torch
    import torch.nn.functional as F

    unknown = (~known).unsqueeze(1).to(torch.float32)
    n = unknown.sum().clamp_min(1.0)
    terms = []
    for name, value in outputs.items():
        if name not in reference or value.shape[2:] != known.shape[1:]:
            continue  # only maps (a method may also output e.g. its decoder's weights)
        diff = F.smooth_l1_loss(value.float(), reference[name].float(), reduction="none")
        terms.append((diff * unknown).sum() / (n * value.shape[1]))
    return torch.stack(terms).mean() if terms else torch.zeros(())


#: How training validates and previews (and fine-tuning compares labels): the pipeline with
#: tiles of 256 pixels, which keep a CPU's memory small next to the training batch.
VALIDATION_PREDICT = PredictConfig(tile_size=256, halo=32)


def segment_sample(
    model: Model,
    image: np.ndarray,
    *,
    device: str = "auto",
    backend: str | None = None,
    knobs: Mapping | None = None,
) -> np.ndarray:
    """Labels of a sample that is the model's input already (normalised ``(C, *spatial)``),
    as validation makes them: :func:`~napari_instseg.core.pipeline.segment_input` with
    :data:`VALIDATION_PREDICT` tiles, the card's back-end and knobs unless given."""
    config = replace(VALIDATION_PREDICT, device=device)
    job = segment_input(model, image, config=config, backend=backend, knobs=dict(knobs or {}))
    return run(job).labels


def decode_sample(model: Model, image: np.ndarray, *, device: str = "auto") -> dict:
    """The decoded network output (the back-ends' input) of a sample, predicted as
    :func:`segment_sample` predicts it."""
    config = replace(VALIDATION_PREDICT, device=device)
    return decode(model, run(predict(model, prepare_input(model, image), config=config)))


def validate(model: Model, samples: list[Sample], *, device: str = "auto") -> float:
    """Mean AP@0.5 (DSB) over ``samples`` with the model's back-end and knobs (its card's).

    Densely labelled samples are scored on all objects; sparsely annotated ones (``known``
    not everywhere) only on their annotated objects, ignoring predictions that touch none
    (:func:`~napari_instseg.core.metrics.average_precision_annotated`).
    """
    scores = []
    for s in samples:
        labels = segment_sample(model, s.image, device=device)
        score = average_precision_dsb if s.known.all() else average_precision_annotated
        scores.append(score(s.labels, labels, iou_threshold=0.5))
    return float(np.mean(scores)) if scores else float("nan")


def train(
    method: Method,
    cfg,
    train_samples: list[Sample],
    val_samples: list[Sample],
    *,
    out_dir: str | Path,
    card: ModelCard,
    config: TrainConfig = TrainConfig(),
    augment: AugmentConfig = AugmentConfig(),
    init_weights: str | Path | Mapping | None = None,
    resume: bool = False,
    preview_image: np.ndarray | None = None,
    anchor_net=None,
    replay_samples: list[Sample] | tuple = (),
) -> Job[TrainResult]:
    """Train ``method`` on (possibly sparse) samples; a stoppable job.

    Parameters
    ----------
    method, cfg : Method and its config
    train_samples, val_samples : list of Sample
        ``Sample.known`` marks annotated pixels; losses ignore the rest.
    out_dir : path
        Gets ``best.*``, ``latest.*`` and ``history.json``.
    card : ModelCard
        Template for the checkpoints' cards (name, data, recipe ...); metrics are filled in.
    init_weights : path or state dict, optional
        Start from these weights (fine-tuning); the card's ``parent`` should name them.
    resume : bool
        Continue from ``out_dir/latest`` (weights, optimizer, step, best metric, RNG state).
    preview_image : ndarray, optional
        Normalised ``(C, *spatial)`` image segmented every ``config.preview_every`` steps by
        the current network, yielded as ``Preview("labels", labels, step)``.

    anchor_net : torch.nn.Module, optional
        A frozen reference (the parent model when fine-tuning): with
        ``config.anchor_weight > 0`` the outputs on unknown pixels are pulled towards its
        outputs (:func:`anchor_term`).
    replay_samples : list of Sample, optional
        Densely labelled crops of the data a parent model learnt from
        (:mod:`~napari_instseg.core.replay`): each crop of a batch comes from them with
        probability ``config.replay_share``, from ``train_samples`` otherwise.

    Validation and previews assemble with the card's back-end and knobs (``card.backend``,
    ``card.backend_config``), the way the trained model will be used.
    """
    import torch

    check_ranges(config)
    if not train_samples:
        raise ValueError("no training samples")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = method.build_net(cfg).to(device)
    if anchor_net is not None:
        anchor_net = anchor_net.to(device).eval().requires_grad_(False)
    if init_weights is not None:
        state = init_weights if isinstance(init_weights, Mapping) else load_state(init_weights)
        net.load_state_dict(state)
    opt = torch.optim.AdamW(
        trainable_parameters(net, config.trainable), lr=config.lr, weight_decay=config.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config))
    loss_fn = method.make_loss(cfg)
    start, best, history = 0, -1.0, {"loss": [], "val_ap50": []}
    state_path = out_dir / "latest.state.safetensors"
    if resume and state_path.exists():
        load_weights(
            net,
            out_dir / "latest.safetensors",
            what=f"the checkpoint of the run in {out_dir}",
            hint="resume with the method and settings that run was started with, or train into "
            "a new folder",
        )
        state = load_state(state_path)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, best = int(state["step"]), float(state["best"])
        history = json.loads(state["history"])
        rng.bit_generator.state = json.loads(state["rng"])
        torch.set_rng_state(state["torch_rng"])
    use_amp = config.amp and device.type == "cuda"
    card = replace(card, method=method.name, method_config=config_to_dict(cfg))
    # the net being trained, as the pipeline sees a model: validation and previews assemble
    # with the card's back-end and knobs, the way the trained model will be used
    model = Model(card, net, method, cfg)
    train_info = {
        **card.training,
        "train_config": asdict(config),
        "augment": asdict(augment),
        "train_images": [s.name for s in train_samples],
        **({"replay_crops": len(replay_samples)} if replay_samples else {}),
        "val_images": [s.name for s in val_samples],
    }

    def save(kind: str, step: int, metric: float) -> Path:
        metrics = {**card.metrics, "iterations": step}
        if metric >= 0:
            metrics["val_ap50"] = metric
        c = replace(card, training={**train_info, "iterations_done": step}, metrics=metrics)
        path = save_model(out_dir, kind, net, c)
        if kind == "latest":
            save_state(
                state_path,
                {
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "step": step,
                    "best": best,
                    "history": json.dumps(history),
                    "rng": json.dumps(rng.bit_generator.state),
                    "torch_rng": torch.get_rng_state(),
                },
            )
        (out_dir / "history.json").write_text(json.dumps(history))
        return path

    def finish(step: int, stopped: bool) -> TrainResult:
        best_path = out_dir / "best.json"
        return TrainResult(
            str(out_dir),
            str(best_path) if best_path.exists() else None,
            str(out_dir / "latest.json"),
            best,
            step,
            stopped,
            history,
        )

    _train_mode(net, config)
    running, t0 = [], time.perf_counter()
    for step in range(start, config.iterations):
        x, targets, known = _make_batch(
            method, cfg, train_samples, config, rng, augment, replay_samples
        )
        x = x.to(device)
        targets = {k: v.to(device) for k, v in targets.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            outputs = net(x)
        loss = loss_fn({k: v.float() for k, v in outputs.items()}, targets)
        if anchor_net is not None and config.anchor_weight > 0:
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=use_amp):
                reference = anchor_net(x)
            loss = loss + config.anchor_weight * anchor_term(outputs, reference, known.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        done = step + 1
        # A Stop may answer any event; it ends the run after this step's checkpoints.
        stopping = False
        if done % config.log_every == 0 or done == config.iterations:
            value = float(np.mean(running))
            history["loss"].append([done, value, time.perf_counter() - t0])
            running = []
            stopping |= stop_requested((yield Metric("loss", value, done)))
        stopping |= stop_requested((yield Progress("train", done, config.iterations)))
        preview_now = preview_image is not None and config.preview_every > 0
        if preview_now and done % config.preview_every == 0 and not stopping:
            net.eval()
            preview = segment_sample(model, preview_image, device=str(device))
            _train_mode(net, config)
            stopping |= stop_requested((yield Preview("labels", preview, done)))
        validate_now = done % config.val_every == 0 or done == config.iterations
        if stopping and not validate_now:
            path = save("latest", done, best)
            yield Checkpoint(str(path), done, "latest")
            return finish(done, True)
        if validate_now:
            # Without validation images there is no "best": only the latest checkpoint is kept.
            ap = -1.0
            if val_samples:
                net.eval()
                ap = validate(model, val_samples, device=str(device))
                _train_mode(net, config)
                history["val_ap50"].append([done, ap])
                stopping |= stop_requested((yield Metric("val_ap50", ap, done)))
            if val_samples and ap > best:
                best = ap
                path = save("best", done, ap)
                stopping |= stop_requested((yield Checkpoint(str(path), done, "best")))
            path = save("latest", done, best)
            stopping |= stop_requested((yield Checkpoint(str(path), done, "latest")))
            if stopping and done < config.iterations:
                return finish(done, True)
    return finish(config.iterations, False)
