"""Command line: ``napari-instseg view|models|segment|evaluate|export|train``.

Every command drives the same core jobs as the napari plugin, with tqdm progress bars. A user
or environment error (a bad path, format or value; an unwritable, full or read-only disk) ends
with one line on stderr and exit code 2, before any work where it can be known then; anything
else is an internal error (exit 1). ``--debug`` or ``NAPARI_INSTSEG_DEBUG=1`` adds the
traceback. Outputs are written under a hidden temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

#: Exit code of a user or environment error (bad input, unwritable output), as argparse uses.
EXIT_USAGE = 2
#: Exit code of an internal error (a bug): the message points to ``--debug``.
EXIT_INTERNAL = 1
#: Environment variable that shows tracebacks, like ``--debug``.
DEBUG_ENV = "NAPARI_INSTSEG_DEBUG"


class CliError(Exception):
    """A problem with the command line to report to the user in one line."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean the user's input or environment is at fault: the ones we
    raise where we check what we are given (:class:`CliError` here, the core's
    :class:`~napari_instseg.core.arrays.InputError` family, ``CheckpointError`` among them, and
    a bundled sample that is missing). A plain ``ValueError`` is not one of them: where our own
    code raises it, it is a bug and is reported as one."""
    from .core.arrays import InputError
    from .core.checkpoint import CheckpointError
    from .core.samples import SampleNotFoundError

    return (CliError, InputError, CheckpointError, SampleNotFoundError)


class _InterruptToStop:
    """While active, the first Ctrl-C asks the job to stop (it keeps its checkpoints and
    returns); a second one interrupts at once, as Ctrl-C usually does."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        import signal

        if self.requested:
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nstopping after this step, keeping the checkpoints (Ctrl-C again to abort)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _progress_driver(job, desc: str, *, stop_on_interrupt: bool = False):
    """Drive a core job to its result with a tqdm bar per stage on stderr.

    A bar starts at the step of the first event it sees (``initial``), so its rate counts only
    the work done while it is shown: a job's first event often arrives with work already
    done (the first batch of tiles), which counted from a zero start shows absurd rates.
    ``Progress("plane", i, n)`` (a stack segmented plane by plane) goes into the bar's label.
    With ``stop_on_interrupt`` (trainings) Ctrl-C sends the job ``Stop`` instead of killing
    it, so the steps since the last checkpoint are kept.
    """
    if not stop_on_interrupt:
        return _drive(job, desc, None)
    with _InterruptToStop() as interrupt:
        return _drive(job, desc, interrupt)


def _drive(job, desc, interrupt):
    """:func:`_progress_driver`'s loop; ``interrupt`` (or None) says when to send ``Stop``."""
    from tqdm import tqdm

    from .core.jobs import Metric, Progress, Stop

    bar = None
    label = desc
    try:
        event = next(job)
        while True:
            if isinstance(event, Progress) and event.stage == "plane":
                if event.total > 1 and event.step < event.total:
                    label = f"{desc} plane {event.step + 1}/{event.total}"
            elif isinstance(event, Progress):
                if (
                    bar is None
                    or bar.total != event.total
                    or event.step < bar.n
                    or bar.desc != label
                ):
                    if bar is not None:
                        bar.close()
                    bar = tqdm(
                        total=event.total,
                        initial=event.step,
                        desc=label,
                        leave=False,
                        unit=event.stage,
                        mininterval=0.5,
                    )
                else:
                    bar.update(event.step - bar.n)
            elif isinstance(event, Metric) and bar is not None:
                bar.set_postfix({event.name: f"{event.value:.4f}"}, refresh=False)
                if event.name.startswith("val"):
                    tqdm.write(f"step {event.step}: {event.name} = {event.value:.4f}")
            event = job.send(Stop() if interrupt is not None and interrupt.requested else None)
    except StopIteration as finished:
        return finished.value
    finally:
        if bar is not None:
            bar.close()


def _expand_inputs(inputs: list[str]) -> list[Path]:
    from glob import glob

    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and p.suffix != ".zarr":
            paths += sorted(
                q for q in p.iterdir() if q.suffix.lower() in (".tif", ".tiff", ".zarr")
            )
        elif any(ch in item for ch in "*?["):
            paths += sorted(Path(q) for q in glob(item))
        elif p.exists():
            paths.append(p)
        else:
            raise CliError(f"input not found: {item}")
    if not paths:
        raise CliError("no input images (.tif, .tiff or .zarr) found")
    return paths


def cmd_models(args) -> int:
    from .core.zoo import list_models

    if args.import_package:
        from .core.io.bioimageio import import_bioimageio

        for package in args.import_package:
            card_path = import_bioimageio(package, overwrite=args.overwrite)
            print(f"{package}: model {card_path.stem!r} -> {card_path}")
        return 0
    models = list_models(args.model_dir)
    if args.json:
        from dataclasses import asdict

        print(json.dumps([{**asdict(c), "path": str(p)} for c, p in models], indent=2))
        return 0
    if not models:
        print("no models found")
        return 0
    print(f"{'name':28} {'method':12} {'dims':4} {'modality':14} {'AP@0.5 (test)':>13}  data")
    for card, _ in models:
        # A model for several datasets shows each one's AP, in the order of its data.
        aps = card.test_ap50().values()
        ap_text = "/".join("-" if ap is None else f"{ap:.3f}" for ap in aps)
        data = card.training.get("data", "")
        print(
            f"{card.name:28} {card.method:12} {card.ndim}D   {card.modality or 'any':14} "
            f"{ap_text:>13}  {data}"
        )
    return 0


def _segment_targets(inputs: list[Path], out: Path, name_of) -> list[Path]:
    """One output path per input; two inputs that would write the same output are refused
    (``a/img.tif`` and ``b/img.tif``, or ``img.tif`` and ``img.zarr``)."""
    claimed: dict[Path, Path] = {}
    for path in inputs:
        target = out / name_of(path)
        if target in claimed:
            raise CliError(
                f"{claimed[target]} and {path} would both be written to {target}; "
                "segment them into separate --output folders or rename one"
            )
        claimed[target] = path
    return list(claimed)


def _refuse_existing(paths: list[Path]) -> None:
    """Refuse, before any work, outputs that exist (the caller checks ``--overwrite``)."""
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise CliError(
            f"{existing[0]}{more} already exists; use --overwrite to replace, or another --output"
        )


def cmd_segment(args) -> int:
    """``segment``: each input through the model into ``--output`` (labels + how they were
    made), or block by block with ``--large``."""
    from .core.io import image_stem

    inputs = _expand_inputs(args.inputs)
    model, knobs, pconf = _segment_settings(args)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CliError(f"--output {out} is a file; give a folder")
    if args.large or args.scheduler or args.workers:
        return _segment_blockwise(args, inputs, out, model, knobs, pconf)
    targets = _segment_targets(inputs, out, lambda p: f"{image_stem(p)}.tif")
    if not args.overwrite:
        _refuse_existing([q for t in targets for q in (t, t.with_suffix(".json"))])
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for k, (path, target) in enumerate(zip(inputs, targets, strict=True), 1):
        counter = f"[{k}/{len(inputs)}] " if len(inputs) > 1 else ""
        _segment_one(args, path, target, model, knobs, pconf, counter)
    if len(inputs) > 1:
        print(f"{len(inputs)} images in {time.perf_counter() - started:.1f} s -> {out}")
    return 0


def _segment_settings(args):
    """The model, knobs and tiling of ``segment``, every value checked before any work."""
    from .core.configs import check_ranges, parse_assignments
    from .core.pipeline import load_model
    from .core.predict import PredictConfig
    from .core.scale import check_diameter

    pconf = PredictConfig(
        tile_size=args.tile_size, halo=args.halo, device=args.device, tta=args.tta
    )
    check_ranges(pconf)
    model = load_model(args.model)
    knobs = parse_assignments(args.set)
    model.backend_config(args.backend, knobs)  # refuse bad knobs before any work
    check_diameter(args.diameter)
    if args.tta and not model.method.supports_tta:
        raise CliError(f"method {model.method.name!r} has no test-time augmentation")
    return model, knobs, pconf


def _segment_one(args, path, target, model, knobs, pconf, counter: str) -> None:
    """Segment one image into ``target`` (+ its JSON) and print what was found."""
    from .core.data.datasets import read_image
    from .core.io import export_labels
    from .core.io.provenance import write_json
    from .core.planes import segment_planes, stack_layout

    image = read_image(path)
    layout = stack_layout(image.shape, ndim=model.card.ndim, channel_axis=args.channel_axis)
    if args.channel is not None and layout.channel_axis is None:
        raise CliError(
            f"{path.name} (shape {image.shape}) has no colour axis: --channel needs "
            "--channel-axis, the axis that holds the channels"
        )
    result = _progress_driver(
        segment_planes(
            model,
            image,
            channel_axis=args.channel_axis,
            channel=args.channel,
            config=pconf,
            backend=args.backend,
            knobs=knobs,
            appearance=args.appearance,
            diameter=args.diameter,
        ),
        desc=f"{counter}{path.name}",
    )
    how = _how_segmented(args, path, model, result, layout)
    # Each file is staged and renamed into place: a full disk or a kill leaves no
    # half-written file under the final name.
    export_labels(target, result.labels, kind="tiff", attrs=how, overwrite=args.overwrite)
    write_json(target.with_suffix(".json"), how, overwrite=args.overwrite)
    planes = f"{layout.describe()} one by one, " if layout.stack_axes else ""
    print(
        f"{counter}{path.name}: {planes}{result.n_objects} objects -> {target} "
        f"(predict {result.seconds['predict']:.1f} s, assemble "
        f"{result.seconds['assemble']:.2f} s)"
    )
    _print_looks(path, model, result, per_plane=bool(planes))


def _how_segmented(args, path, model, result, layout) -> dict:
    """How the labels were made (:func:`~napari_instseg.core.io.provenance.provenance`, the
    record the Segment widget keeps too), the input path and channel choice: in the TIFF
    (``export`` reads it) and next to it. A stack says it per plane too; the top-level
    entries are its first plane's."""
    from .core.io import image_stem
    from .core.io.provenance import image_look, provenance

    first = result.planes[0]
    how = {
        "image": str(path),
        **provenance(
            model,
            backend=result.backend,
            knobs=result.knobs,
            info=first["info"],
            report=first["report"],
            source_image=image_stem(path),
        ),
    }
    if args.channel_axis is not None or args.channel is not None:
        how.update(channel_axis=args.channel_axis, channel=args.channel)
    if layout.stack_axes:
        how["stack_axes"] = list(layout.stack_axes)
        how["planes"] = [
            {
                "index": p["index"],
                "objects": p["objects"],
                "ids": p["ids"],
                **image_look(p["info"], p["report"]),
            }
            for p in result.planes
        ]
    return how


def _print_looks(path, model, result, *, per_plane: bool) -> None:
    """How the image was seen (scale, appearance), routing notes, and a modality mismatch."""
    from .core.configs import config_to_dict
    from .core.modality import mismatch_note, route_text
    from .core.pipeline import describe_look

    looks: dict[str, int] = {}
    for p in result.planes:
        text = describe_look(p["info"])
        looks[text] = looks.get(text, 0) + 1
    for text, count in looks.items():
        print(f"  {text}" + (f" ({count} of {len(result.planes)} planes)" if per_plane else ""))
    notes = []
    defaults = config_to_dict(model.backend_config(result.backend))
    for p in result.planes:
        text = route_text(p["report"], result.knobs, defaults)
        if p["report"].get("route") and text not in notes:
            notes.append(text)
    for text in notes:
        print(f"  {text}")
    note = mismatch_note(result.planes[0]["info"], model.card)
    if note:
        print(f"note: {path.name} {note}", file=sys.stderr)


def _whole_numbers(minimum: int, *, per_axis: bool = False):
    """An argparse type: a whole number ``>= minimum`` (or, ``per_axis``, ``64,512,512`` or
    ``auto``), refused while the command line is read, before any work."""

    def parse(text: str):
        if per_axis and text == "auto":
            return text
        try:
            parts = tuple(int(p) for p in text.split(",")) if per_axis else (int(text),)
        except ValueError:
            form = "a whole number or one per axis (64,512,512)" if per_axis else "a whole number"
            raise argparse.ArgumentTypeError(f"expected {form}, not {text!r}") from None
        if min(parts) < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {text}")
        return parts[0] if len(parts) == 1 else parts

    return parse


def _thresholds(text: str) -> tuple[float, ...]:
    """An argparse type: IoU thresholds ``0.5,0.75``, each in (0, 1]."""
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, not {text!r}"
        ) from None
    if not all(0.0 < t <= 1.0 for t in values):
        raise argparse.ArgumentTypeError(f"IoU thresholds lie in (0, 1], not {text}")
    return values


def _version() -> str:
    """The installed distribution's version; the package's own when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-instseg")
    except PackageNotFoundError:
        from . import __version__

        return __version__


def _segment_blockwise(args, inputs, out, model, knobs, pconf) -> int:
    """`segment --large`: every input through the blockwise dask engine, one cluster."""
    from .core.large.engine import DaskClient, segment_large

    if args.channel is not None:
        raise CliError(
            "--channel is not available block by block (--large); save that channel "
            "alone, or give --channel-axis for a model that takes all channels"
        )
    suffix = ".ome.zarr" if args.format == "ome-zarr" else ".zarr"
    targets = _segment_targets(inputs, out, lambda p: p.name.split(".")[0] + suffix)
    out.mkdir(parents=True, exist_ok=True)
    cluster = DaskClient(args.scheduler, n_workers=args.workers)
    where = args.scheduler or f"a local cluster of {len(cluster.client.nthreads())} workers"
    print(f"blockwise on {where}")
    try:
        for k, (path, target) in enumerate(zip(inputs, targets, strict=True), 1):
            counter = f"[{k}/{len(inputs)}] " if len(inputs) > 1 else ""
            result = _progress_driver(
                segment_large(
                    path,
                    target,
                    model,
                    backend=args.backend,
                    knobs=knobs,
                    core=args.block,
                    halo="auto" if args.block_halo is None else args.block_halo,
                    predict=pconf,
                    channel_axis=args.channel_axis,
                    client=cluster.client,
                    resume=not args.no_resume,
                    overwrite=args.overwrite,
                    appearance=args.appearance,
                    diameter=args.diameter,
                ),
                desc=f"{counter}{path.name}",
            )
            print(
                f"{counter}{path.name}: {result.summary()} -> {target} "
                f"({result.seconds['total']:.1f} s)"
            )
            if result.look_text():
                print(f"  {result.look_text()}")
            if result.stats.get("wider_than_halo", 0) > 0.001 * max(result.n_objects, 1):
                print(
                    f"note: {result.stats['wider_than_halo']} objects were wider than the "
                    "halo and stitched from parts; a larger --block-halo is safer",
                    file=sys.stderr,
                )
    finally:
        cluster.close()
    return 0


def _label_files(folder: Path) -> dict[str, Path]:
    """Label files of a folder by image name (``X`` for ``X.tif``, ``X.zarr``, ``X.ome.zarr``);
    hidden files (a staged output) are not labels."""
    from .core.io import image_stem

    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in (".tif", ".tiff", ".zarr"):
            continue
        name = image_stem(path)
        if name in found:
            raise CliError(f"{found[name]} and {path} are both labels of image {name!r}")
        found[name] = path
    return found


def _binary_masks(labels) -> int:
    """The number of separate regions of a 0/1 image (0 for anything else): more than one
    means a semantic mask, which scores as one object."""
    import numpy as np
    from skimage.measure import label as label_regions

    if labels.max() != 1:
        return 0
    return int(label_regions(labels > 0).max()) if np.all(labels <= 1) else 0


def _read_label_image(path: Path):
    """The labels of a TIFF, zarr or OME-Zarr file, refused with the file's name when they
    are not labels (non-integer values, negative ids)."""
    from .core.arrays import InputError, as_labels
    from .core.io import read_labels

    try:
        return as_labels(read_labels(path)[0])
    except InputError as err:
        raise CliError(f"{path}: {err}") from None


def cmd_evaluate(args) -> int:
    import numpy as np

    from .core.metrics import evaluate_pair, summarise

    pred_dir, gt_dir = Path(args.pred_dir), Path(args.gt_dir)
    for d in (pred_dir, gt_dir):
        if not d.is_dir():
            raise CliError(f"not a folder: {d}")
    gts, preds = _label_files(gt_dir), _label_files(pred_dir)
    names = sorted(gts)
    if not set(gts) & set(preds):
        raise CliError(f"no file names in common between {pred_dir} and {gt_dir}")
    # A ground-truth image with no prediction is a miss (every object missed), not left out.
    missing = sorted(set(gts) - set(preds))
    thresholds = args.thresholds
    rows, binary = {}, []
    for name in names:
        gt = _read_label_image(gts[name])
        pred = _read_label_image(preds[name]) if name in preds else np.zeros_like(gt)
        if gt.shape != pred.shape:
            raise CliError(f"{name}: prediction {pred.shape} and ground truth {gt.shape} differ")
        if _binary_masks(gt) > 1:
            binary.append(name)
        rows[name] = evaluate_pair(gt, pred, thresholds=thresholds)
    summary = summarise(list(rows.values()))
    if binary:
        print(
            f"warning: ground truth {', '.join(binary)} is binary (0/1) with separate regions: "
            "a semantic mask, scored as one object; give instance labels (1..N)",
            file=sys.stderr,
        )
    if missing:
        print(
            f"warning: {len(missing)} ground-truth image(s) have no prediction in {pred_dir} "
            f"and count as misses (AP 0): {', '.join(missing)}",
            file=sys.stderr,
        )
    if args.json:
        print(
            json.dumps({"images": rows, "mean": summary, "missing_predictions": missing}, indent=2)
        )
        return 0
    _print_score_table(rows, summary, thresholds, missing)
    return 0


def _print_score_table(rows: dict, summary: dict, thresholds, missing: list[str]) -> None:
    """Per image and mean: AP per threshold, F1, the challenge's F1, SBD, object counts."""
    keys = [f"ap@{t:.2f}" for t in thresholds] + ["f1@0.50", "f1_challenge", "sbd"]
    keys += ["n_true", "n_pred"]
    keys = [k for k in keys if k in summary]
    width = max(len(n) for n in [*rows, "mean"])

    def cells(row):
        return " ".join(f"{row[k]:8.3f}" if "n_" not in k else f"{int(row[k]):8d}" for k in keys)

    print(f"{'image':{width}} " + " ".join(f"{k.replace('_challenge', '_ch'):>8}" for k in keys))
    for name, row in rows.items():
        print(
            f"{name:{width}} {cells(row)}"
            + ("  (no prediction: a miss)" if name in missing else "")
        )
    print(f"{'mean':{width}} {cells(summary)}")


def _annotated_images(args):
    """(name, image, annotation) items from --images/--annotations pairs or a --project."""
    from .core.data.datasets import read_image
    from .core.finetune import AnnotatedImage
    from .core.project import Project

    items = []
    if args.project:
        project = Project(args.project, create=False)
        for entry in project.entries():
            if not entry.has_annotations:
                continue
            image = project.load_image(entry.key)
            if image is None:
                raise CliError(f"project entry {entry.name!r} has no stored image")
            items.append(AnnotatedImage(entry.name, image, project.load_annotations(entry.key)))
        if not items:
            raise CliError(f"no annotated images in project {args.project}")
    images, annotations = args.images or [], args.annotations or []
    if len(images) != len(annotations):
        raise CliError(
            f"--images and --annotations must pair up: got {len(images)} and {len(annotations)}"
        )
    for image_path, annotation_path in zip(images, annotations, strict=True):
        for path in (image_path, annotation_path):
            if not Path(path).exists():
                raise CliError(f"input not found: {path}")
        items.append(
            AnnotatedImage(
                Path(image_path).stem,
                read_image(image_path),
                read_image(annotation_path),
                channel_axis=args.channel_axis,
            )
        )
    if not items:
        raise CliError("fine-tuning needs --images with --annotations, or --project")
    return items


def _context_images(args):
    """Unannotated images from --context (read like --images)."""
    from .core.data.datasets import read_image
    from .core.finetune import UnannotatedImage

    missing = [p for p in args.context or [] if not Path(p).exists()]
    if missing:
        raise CliError(f"input not found: {missing[0]}")
    return [
        UnannotatedImage(Path(p).stem, read_image(p), channel_axis=args.channel_axis)
        for p in args.context or []
    ]


def cmd_finetune(args) -> int:
    """``train --from MODEL``: fine-tune a model on sparse annotations and publish it."""
    from .core.finetune import (
        describe_comparison,
        describe_heldout,
        describe_refit,
        finetune,
        unique_model_name,
    )
    from .core.pipeline import load_model
    from .core.zoo import list_models, user_model_dir

    config = _finetune_config(args)
    data = _annotated_images(args)
    context = _context_images(args)
    model = load_model(args.from_model)
    extra = [args.models_dir] if args.models_dir else None
    name = args.name or unique_model_name(
        f"{model.card.name}-finetuned", [c.name for c, _ in list_models(extra)]
    )
    # The checkpoints go next to the model: under --models-dir when given, so that nothing
    # is written to the user's model folder then.
    models_dir = Path(args.models_dir) if args.models_dir else user_model_dir()
    run_dir = Path(args.output) if args.output else models_dir / "runs" / name
    result = _progress_driver(
        finetune(
            model,
            data,
            name=name,
            run_dir=run_dir,
            models_dir=args.models_dir,
            config=config,
            resume=args.resume,
            context=context,
        ),
        desc="fine-tune",
        stop_on_interrupt=True,
    )
    ended = f"{result.run.iterations_done} iterations{', stopped' if result.run.stopped else ''}"
    if result.model_path is None:
        print(f"no checkpoint to publish ({ended}; run folder {run_dir})")
        return 0
    heldout = describe_heldout(result, held_out_fraction=config.held_out_fraction)
    print(heldout)
    print(f"model {name!r} saved to {result.model_path} ({ended}; checkpoints in {run_dir})")
    if describe_refit(result.refit):
        print(f"re-chosen for it: {describe_refit(result.refit)}")
    if result.comparison:
        many = len(result.comparison["images"]) > 1
        line = describe_comparison(result.comparison, per_image=many)
        print(f"compared with {model.card.name}, {line}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _finetune_config(args):
    """The fine-tune's settings: ``FinetuneConfig`` is the one source of the defaults; what
    the user gave is checked against its declared ranges."""
    from .core.configs import config_from_dict
    from .core.finetune import FinetuneConfig

    given = {
        field: getattr(args, option)
        for option, field in (
            ("iterations", "iterations"),
            ("lr", "lr"),
            ("batch_size", "batch_size"),
            ("patch_size", "patch_size"),
            ("held_out", "held_out_fraction"),
            ("anchor_weight", "anchor_weight"),
            ("replay", "replay"),
            ("tune", "tune"),
            ("val_every", "val_every"),
        )
        if getattr(args, option) is not None
    }
    return config_from_dict(
        FinetuneConfig,
        {
            **given,
            "refit_knobs": not args.keep_knobs,
            "adapt_norm": args.adapt_norm,
            "preview_every": 0,
            "seed": args.seed,
            "device": args.device,
        },
    )


def cmd_train(args) -> int:
    """``train``: from scratch on dataset folders, or a fine-tune (``--from``)."""
    if args.from_model:
        return cmd_finetune(args)
    if not args.method or not args.data or not args.output:
        raise CliError(
            "training from scratch needs --method, --data and --output "
            "(or fine-tune with --from MODEL --images ... --annotations ...)"
        )
    from .core.configs import check_ranges, config_from_dict, parse_assignments
    from .core.data.augment import AugmentConfig
    from .core.data.training_set import load_training_set
    from .core.methods import get_method
    from .core.train import TrainConfig, train

    # Every value the user gave is checked before any data is read.
    method = get_method(args.method)
    given = {
        k: getattr(args, k)
        for k in ("iterations", "batch_size", "patch_size", "lr", "val_every")
        if getattr(args, k) is not None
    }
    tconf = TrainConfig(**given, seed=args.seed, device=args.device)
    check_ranges(tconf)
    augment = config_from_dict(AugmentConfig, parse_assignments(args.augment))
    cfg = config_from_dict(method.config_type, parse_assignments(args.set))
    init = _init_weights(args.init, method) if args.init else None
    data = load_training_set(
        args.data,
        split=args.split,
        val_split=args.val_split,
        appearance=args.appearance,
        modality=args.modality,
        kinds=args.kind,
        sparse=args.sparse,
        sparse_background=args.sparse_background,
        seed=args.seed,
    )
    if method.fit_config is not None:  # deterministic, so a resumed run gets the same
        fitted = method.fit_config(cfg, data.masks)
        if fitted != cfg:
            print(f"configuration fitted to the training data: {fitted}")
        cfg = fitted
    result = _progress_driver(
        train(
            method,
            cfg,
            data.train,
            data.val,
            out_dir=args.output,
            card=_new_card(args, method, data),
            config=tconf,
            augment=augment,
            init_weights=init,
            resume=args.resume,
        ),
        desc="train",
        stop_on_interrupt=True,
    )
    ended = f"{result.iterations_done} iterations{', stopped' if result.stopped else ''}"
    if result.best_path:
        print(
            f"best val AP@0.5 {result.best_metric:.4f}; checkpoints in {result.out_dir} ({ended})"
        )
    else:
        print(f"no validation split: latest checkpoint in {result.out_dir} ({ended})")
    return 0


def _init_weights(name: str, method):
    """The weights of model ``name`` for ``--init``, refused when it is another method's."""
    from .core.zoo import find_model

    card, net = find_model(name)
    if card.method != method.name:
        raise CliError(f"--init {name} is a {card.method} model, not {method.name}")
    return net.state_dict()


def _new_card(args, method, data):
    """The card a training from scratch starts with (``train`` adds what it measures)."""
    from .core.checkpoint import ModelCard

    return ModelCard(
        name=args.name or "model",
        method=method.name,
        method_config={},
        backend=method.default_backend,
        modality=args.modality,
        object_size=data.object_size(),
        parent=args.init if args.init else None,
        training={
            "data": data.data_name,
            "split": args.split,
            "recipe": args.recipe or "",
            "sparse_fraction": args.sparse,
        },
        description=args.description or method.description,
    )


def cmd_export(args) -> int:
    """``export``: labels to files (the format from each ``--output``'s suffix), and the
    model with its tuned knobs (``--output-model``, ``--bioimageio``)."""
    import numpy as np

    from .core.data.datasets import read_image
    from .core.io import export_format, read_labels

    outputs = args.output or []
    if not outputs and not args.output_model and not args.bioimageio:
        raise CliError("nothing to export: give --output, --output-model and/or --bioimageio")
    kinds = [export_format(out) for out in outputs]  # refuse a bad suffix before any work
    if outputs and not args.labels:
        raise CliError("--output needs a LABELS file (.tif, .tiff or .zarr)")
    if "ome-zarr" in kinds and not args.image:
        raise CliError("OME-Zarr output needs the image the labels belong to (--image)")
    labels, metadata = read_labels(args.labels) if args.labels else (None, {})
    model = args.model or metadata.get("model")
    if args.backend or args.set or args.model or args.output_model or args.bioimageio:
        metadata = _export_settings(args, model, metadata)
    image = read_image(args.image) if args.image else None
    n_objects = int(np.count_nonzero(np.unique(labels))) if labels is not None else 0
    for out, kind in zip(outputs, kinds, strict=True):
        _write_export(args, out, kind, labels, image, metadata)
        print(f"{args.labels}: {n_objects} objects -> {out} ({kind})")
    if args.bioimageio:
        from .core.io.bioimageio import export_bioimageio

        package = export_bioimageio(
            model,
            args.bioimageio,
            backend=metadata["backend"],
            knobs=metadata["knobs"],
            name=args.model_name,
            overwrite=args.overwrite,
        )
        print(f"model {metadata['model']!r} ({metadata['backend']}) -> {package} (bioimage.io)")
    if args.output_model:
        from .core.io.model_copy import export_model

        card_path = export_model(
            model,
            args.output_model,
            backend=metadata["backend"],
            knobs=metadata["knobs"],
            name=args.model_name,
            overwrite=args.overwrite,
        )
        print(f"model {card_path.stem!r} ({metadata['backend']}, tuned knobs) -> {card_path}")
    return 0


def _export_settings(args, model, metadata: dict) -> dict:
    """``metadata`` with the model, back-end and knobs the export records: the labels' own
    unless ``--model``/``--backend``/``--set`` say otherwise, checked against the model."""
    from .core.configs import parse_assignments
    from .core.io.model_copy import model_settings
    from .core.io.provenance import made_by
    from .core.zoo import find_card

    if not model:
        raise CliError(
            "--backend, --set, --output-model and --bioimageio need --model (or labels "
            "whose metadata names their model)"
        )
    card = find_card(model)
    same = card.name == metadata.get("model") and (
        not args.backend or args.backend == metadata.get("backend")
    )
    base = dict(metadata.get("knobs") or {}) if same else {}
    backend = args.backend or (metadata.get("backend") if same else None)
    backend, knobs = model_settings(card, backend, {**base, **parse_assignments(args.set)})
    return {**metadata, **made_by(card.name, card.method, backend, knobs)}


def _write_export(args, out, kind: str, labels, image, metadata: dict) -> None:
    """Write ``labels`` to ``out`` in format ``kind`` (staged; refused when it exists)."""
    from .core.io import export_labels

    export_labels(
        out,
        labels,
        image,
        kind=kind,
        attrs=metadata,
        channel_axis=args.channel_axis,
        image_name=args.image_name or (Path(args.image).name.split(".")[0] if args.image else ""),
        labels_name=args.labels_name,
        levels=args.levels,
        overwrite=args.overwrite,
    )


def cmd_view(args) -> int:
    for path in args.inputs:
        if not Path(path).exists():
            raise CliError(f"input not found: {path}")
    from .plugin.launch import display_problem, open_viewer

    problem = display_problem()
    if problem:
        raise CliError(
            f"napari cannot open a window here ({problem}); run `view` on a machine with a "
            "display (or over ssh -X, or under xvfb-run); segment, train, fine-tune and export "
            "need none"
        )
    open_viewer(args.inputs, sample=None if args.inputs else args.sample, model=args.model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="napari-instseg", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    _add_view_parser(sub)
    _add_models_parser(sub)
    _add_segment_parser(sub)
    _add_evaluate_parser(sub)
    _add_export_parser(sub)
    _add_train_parser(sub)
    debug_help = f"show the traceback of an error (also {DEBUG_ENV}=1)"
    p.add_argument("--debug", action="store_true", help=debug_help)
    for command in sub.choices.values():  # before or after the command name
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help
        )
    return p


def _add_view_parser(sub) -> None:
    """The ``view`` command's options."""
    v = sub.add_parser("view", help="open napari with an image (or a sample) and the widget")
    v.add_argument("inputs", nargs="*", help="images to open (default: the nuclei sample)")
    v.add_argument(
        "--sample",
        default="nuclei2d_dsb_stardist",
        choices=[
            "nuclei2d_dsb_stardist",
            "phase2d_usiigaci_set1_crop512",
            "nuclei3d_synthetic_stardist",
        ],
        help="bundled sample opened when no image is given",
    )
    v.add_argument("--model", help="model chosen in the Segment widget (see `models`)")
    v.set_defaults(func=cmd_view)


def _add_models_parser(sub) -> None:
    """The ``models`` command's options."""
    m = sub.add_parser("models", help="list the available models and their cards")
    m.add_argument("--json", action="store_true", help="print the cards as JSON")
    m.add_argument("--model-dir", action="append", help="extra folder with models")
    m.add_argument(
        "--import",
        dest="import_package",
        action="append",
        metavar="PACKAGE.zip",
        help="install a bioimage.io package exported by napari-instseg in the user model folder",
    )
    m.add_argument("--overwrite", action="store_true", help="with --import: replace a model")
    m.set_defaults(func=cmd_models)


def _add_segment_parser(sub) -> None:
    """The ``segment`` command's options."""
    s = sub.add_parser(
        "segment",
        help="segment images into uint32 label tifs",
        description=(
            "Each input X.tif, X.zarr or X.ome.zarr gives --output/X.tif (labels) and "
            "--output/X.json (how they were made). Existing outputs are refused unless "
            "--overwrite; two inputs with the same name (a/X.tif and b/X.tif) are refused, "
            "not renamed: segment them into separate --output folders."
        ),
    )
    s.add_argument("inputs", nargs="+", help="tif/zarr files, folders or globs")
    s.add_argument("--model", required=True, help="model name (see `models`) or card path")
    s.add_argument("--output", required=True, help="folder for the label tifs")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument("--backend", help="assembly back-end (default: the model's)")
    s.add_argument("--set", action="append", metavar="KNOB=VALUE", help="post-processing knob")
    s.add_argument(
        "--tile-size",
        type=int,
        default=512,
        help="side of the tiles the network sees, in pixels (default 512; smaller needs "
        "less memory)",
    )
    s.add_argument(
        "--halo",
        type=int,
        default=32,
        help="context added around each tile and cut off after, in pixels (default 32)",
    )
    s.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    s.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        help="axis of the image that holds channels (RGB/RGBA last is found by itself); "
        "other axes before the model's spatial ones are a stack (time, z), segmented "
        "plane by plane",
    )
    s.add_argument(
        "--channel",
        type=_whole_numbers(0),
        default=None,
        help="segment only this channel (of --channel-axis, or of an RGB image's colours)",
    )
    s.add_argument(
        "--diameter",
        default="auto",
        help="the objects' diameter in pixels, 'auto' to estimate it (default; models whose "
        "card has a working diameter), or 'off' for the model's native scale; the image is "
        "resized so its objects have the size the model works best at, labels come back on "
        "the input grid",
    )
    s.add_argument(
        "--appearance",
        default="auto",
        choices=["auto", "as-is", "invert", "stain"],
        help="how the image is mapped to what the model learnt: auto (default) unmixes the "
        "nuclear stain of colour stained images and inverts dark-on-bright grey images for "
        "fluorescence models; as-is; invert; stain (haematoxylin of an RGB image)",
    )
    s.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over flips and 90-degree rotations",
    )
    big = s.add_argument_group(
        "large images (blockwise on dask.distributed; on by --large, --workers or --scheduler)"
    )
    big.add_argument("--large", action="store_true", help="segment block by block")
    big.add_argument(
        "--workers", type=_whole_numbers(1), help="local cluster workers (default: one per core)"
    )
    big.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler, e.g. tcp://host:8786")
    big.add_argument(
        "--block",
        type=_whole_numbers(1, per_axis=True),
        help="block core, e.g. 2048 or 64,512,512 (default: from the halo)",
    )
    big.add_argument(
        "--block-halo",
        type=_whole_numbers(0, per_axis=True),
        help="context around each block (default: auto from model)",
    )
    big.add_argument(
        "--format", choices=["ome-zarr", "zarr"], default="ome-zarr", help="output per image"
    )
    big.add_argument("--no-resume", action="store_true", help="redo blocks a stopped run did")
    s.set_defaults(func=cmd_segment)


def _add_evaluate_parser(sub) -> None:
    """The ``evaluate`` command's options."""
    e = sub.add_parser(
        "evaluate",
        help="compare predicted and ground-truth label folders",
        description=(
            "Label images are paired by name (X.tif, X.zarr or X.ome.zarr in each folder). "
            "Per image and on average: AP at each IoU threshold, F1 at IoU 0.5, the cell "
            "segmentation challenge's F1, SBD, and the object counts. A ground-truth image "
            "with no prediction counts as a miss."
        ),
    )
    e.add_argument("pred_dir", help="folder with the predicted labels")
    e.add_argument("gt_dir", help="folder with the ground-truth labels")
    e.add_argument(
        "--thresholds",
        type=_thresholds,
        default="0.5,0.6,0.7,0.8,0.9",
        help="IoU thresholds for AP, comma separated (default 0.5,0.6,0.7,0.8,0.9)",
    )
    e.add_argument(
        "--json", action="store_true", help="print the scores as JSON instead of a table"
    )
    e.set_defaults(func=cmd_evaluate)


def _add_export_parser(sub) -> None:
    """The ``export`` command's options."""
    x = sub.add_parser(
        "export",
        help="write labels as TIFF, zarr, OME-Zarr, a CSV object table, an ImageJ ROI set or "
        "QuPath GeoJSON; save a tuned model",
        description=(
            "Export labels in the formats of the napari Export widget. The format of each "
            "--output follows its suffix: .tif/.tiff (uint32 TIFF), .zarr (zarr v3 array), "
            ".ome.zarr (OME-Zarr 0.5 image + labels, needs --image), .csv (one row per "
            "object: id, area, centroid, bbox, mean intensity with --image, model and knobs), "
            ".zip (ImageJ/Fiji ROI set: one ROI per object named by its id, per Z plane in 3D), "
            ".geojson (QuPath GeoJSON: one outline per object with the table's measurements). "
            "Model, back-end and knobs come from the labels' own metadata (files written by "
            "napari-instseg) unless --model/--backend/--set say otherwise. --output-model "
            "saves a copy of the model whose card holds these knobs as its defaults."
        ),
    )
    x.add_argument("labels", nargs="?", help="labels file (.tif, .tiff, .zarr or .ome.zarr)")
    x.add_argument(
        "--output", "-o", action="append", metavar="OUT", help="output file; repeat for several"
    )
    x.add_argument("--image", help="the image the labels belong to (tif or zarr)")
    x.add_argument("--channel-axis", type=int, default=None, help="channel axis of --image")
    x.add_argument("--image-name", help="OME-Zarr image name (default: --image file name)")
    x.add_argument("--labels-name", default="labels", help="OME-Zarr label image name")
    x.add_argument("--levels", type=_whole_numbers(1), help="OME-Zarr pyramid levels")
    x.add_argument("--model", help="model that made the labels (name or card path)")
    x.add_argument("--backend", help="assembly back-end the labels were made with")
    x.add_argument("--set", action="append", metavar="KNOB=VALUE", help="knob value")
    x.add_argument("--output-model", metavar="DIR", help="folder for NAME.safetensors + NAME.json")
    x.add_argument(
        "--bioimageio", metavar="OUT.zip", help="write the model as a bioimage.io package"
    )
    x.add_argument(
        "--model-name",
        help="name of the saved model (default: MODEL-tuned; for --bioimageio MODEL's own)",
    )
    x.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    x.set_defaults(func=cmd_export)


def _add_train_parser(sub) -> None:
    """The ``train`` command's options."""
    t = sub.add_parser(
        "train",
        help="train a model on a dataset folder, or fine-tune one from sparse annotations",
        description=(
            "From scratch: --method M --data FOLDER --output DIR. Fine-tune: --from MODEL "
            "--images IMG... --annotations ANN... (or --project FOLDER.zarr); annotation ids: "
            "0 = not annotated, 65535 = painted background, others = whole objects. The "
            "fine-tuned model is saved as --name in the user's model folder (or --models-dir)."
        ),
    )
    t.add_argument("--method", help="method to train from scratch (e.g. embedseg, spoco)")
    t.add_argument(
        "--data",
        action="append",
        help="folder with images/, masks/, metadata.csv (repeat to train on several; each "
        "contributes equally)",
    )
    t.add_argument(
        "--split", default="train", help="metadata.csv split to train on (default train)"
    )
    t.add_argument(
        "--kind",
        action="append",
        help="keep only images of this metadata 'kind' (e.g. stained_colour; repeatable)",
    )
    t.add_argument("--val-split", default="val", help="'' to skip validation")
    t.add_argument("--output", help="folder for checkpoints (fine-tune: the run folder)")
    t.add_argument("--name", help="model name (default: model; fine-tune: MODEL-finetuned)")
    t.add_argument(
        "--modality",
        default="",
        help="the images' modality for the card (fluorescence, phase_contrast, brightfield)",
    )
    t.add_argument("--description", default="", help="one line for the model card")
    t.add_argument("--recipe", default="", help="how it was trained, for the model card")
    t.add_argument(
        "--iterations", type=int, help="default 2000 (fine-tune: the Fine-tune widget's)"
    )
    t.add_argument("--batch-size", type=int, help="default 8 (fine-tune: 4)")
    t.add_argument("--patch-size", type=int, help="default 128")
    t.add_argument("--lr", type=float, help="default 2e-3 (fine-tune: the Fine-tune widget's)")
    t.add_argument("--val-every", type=int, help="default 250 (fine-tune: 25)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    t.add_argument("--sparse", type=float, default=1.0, help="fraction of instances kept")
    t.add_argument(
        "--sparse-background",
        default="none",
        choices=["none", "all", "near"],
        help="with --sparse: background counted as known: none (default), all, or near the "
        "kept objects",
    )
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="method config value")
    t.add_argument(
        "--resume", action="store_true", help="continue from the run folder's latest checkpoint"
    )
    t.add_argument(
        "--init",
        metavar="MODEL",
        help="start from this model's weights (a warm start; same method and architecture)",
    )
    t.add_argument(
        "--appearance",
        default="as-is",
        choices=["as-is", "auto"],
        help="how training images become one channel: colour to grey (as-is), or stained and "
        "brightfield images mapped into --modality's appearance as segmenting does (auto)",
    )
    t.add_argument(
        "--augment",
        action="append",
        metavar="KEY=VALUE",
        help="augmentation setting (zoom, gamma, blur_prob, blur_sigma, noise, invert_prob, "
        "intensity_scale, intensity_shift, ...)",
    )
    _add_finetune_options(t)
    t.set_defaults(func=cmd_train)


def _add_finetune_options(t) -> None:
    """The options of ``train --from MODEL`` (a fine-tune)."""
    t.add_argument("--from", dest="from_model", metavar="MODEL", help="fine-tune this model")
    t.add_argument("--images", nargs="+", metavar="IMAGE", help="fine-tune: images")
    t.add_argument("--annotations", nargs="+", metavar="LABELS", help="fine-tune: annotations")
    t.add_argument("--project", help="fine-tune: every annotated image of a project folder")
    t.add_argument(
        "--held-out",
        type=float,
        default=None,
        help="fine-tune: share of the annotated objects held out to judge it (default: the "
        "Fine-tune widget's)",
    )
    t.add_argument(
        "--anchor-weight",
        type=float,
        default=None,
        help="fine-tune: how strongly unannotated pixels keep the base model's output "
        "(default: the Fine-tune widget's)",
    )
    t.add_argument(
        "--tune",
        default=None,
        help="fine-tune: which weights move: all, encoder or first_block (default: the "
        "Fine-tune widget's)",
    )
    t.add_argument(
        "--replay",
        type=float,
        default=None,
        help="fine-tune: share of each batch from fully annotated crops of the base model's "
        "own training data, shipped with it (0: the annotations only; default: the Fine-tune "
        "widget's)",
    )
    t.add_argument(
        "--keep-knobs",
        action="store_true",
        help="fine-tune: publish the base model's knobs as they are (default: re-choose the "
        "merge distance on the annotations)",
    )
    t.add_argument(
        "--context",
        nargs="+",
        metavar="IMAGE",
        help="fine-tune: more of your images, not annotated (adapted to with --adapt-norm; the "
        "base and the new model are compared on them)",
    )
    t.add_argument(
        "--adapt-norm",
        action="store_true",
        help="fine-tune: re-estimate the base model's normalisation statistics on the "
        "annotated and --context images before training",
    )
    t.add_argument("--channel-axis", type=int, default=None, help="fine-tune: image channels")
    t.add_argument(
        "--models-dir",
        help="fine-tune: where to save the model, and its checkpoints under runs/ unless "
        "--output says (default: the user's model folder)",
    )


def _debug_wanted(args) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _os_error_text(err: OSError) -> str:
    """One line for a file-system error: what failed, on which path, what to do."""
    what = err.strerror or str(err)
    where = f"{err.filename}: " if err.filename else ""
    hint = _OS_HINTS.get(err.errno, "")
    return f"{where}{what}{hint}"


_OS_HINTS = {
    errno.ENOSPC: "; free some space or choose another --output",
    errno.EACCES: "; choose a folder you can write to",
    errno.EPERM: "; choose a folder you can write to",
    errno.EROFS: "; the disk is read-only, choose another folder",
    errno.EEXIST: "; a file is in the way, choose another path",
    errno.ENOTDIR: "; part of the path is a file, not a folder",
    errno.EISDIR: "; it is a folder, give a file name",
}


class _OncePerRun(logging.Filter):
    """Let each distinct warning through once per command (a card is read by every lookup)."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


@contextmanager
def _warnings_to_stderr():
    """The library's logged warnings as one ``napari-instseg: warning: ...`` line each."""
    logger = logging.getLogger("napari_instseg")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("napari-instseg: warning: %(message)s"))
    handler.addFilter(_OncePerRun())
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def main(argv: list[str] | None = None) -> int:
    """Run one command. The error boundary: a user or environment error (an input we refused,
    a file that cannot be read or written) is one line on stderr and exit code 2; anything
    else, a ``ValueError`` from our own code included, is an internal error (exit 1) whose line
    says so and how to see the traceback. ``--debug`` or ``NAPARI_INSTSEG_DEBUG=1`` adds the
    traceback to either."""
    args = build_parser().parse_args(argv)
    try:
        with _warnings_to_stderr():
            return args.func(args)
    except KeyboardInterrupt:
        print("napari-instseg: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the boundary: every error ends as one line
        text, code = _classify(err, debug=_debug_wanted(args))
        if _debug_wanted(args):
            traceback.print_exception(err, file=sys.stderr)
        # One line: a message with line breaks (a wrapped library error) is joined.
        print(f"napari-instseg {args.command}: error: {' '.join(text.split())}", file=sys.stderr)
        return code


def _classify(err: Exception, *, debug: bool) -> tuple[str, int]:
    """The error line's text and the exit code of ``err`` (see :func:`main`)."""
    if isinstance(err, _user_errors()):
        return str(err), EXIT_USAGE
    if isinstance(err, OSError):
        return _os_error_text(err), EXIT_USAGE
    text = f"internal error ({type(err).__name__}: {err})"
    if not debug:
        text += f"; run again with --debug (or {DEBUG_ENV}=1) for the traceback and report it"
    else:
        text += "; the traceback is above, please report it"
    return text, EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
