"""Blockwise segmentation of images larger than memory on dask.distributed.

:func:`segment_large` is a stoppable job (like every job of the library) that

1. opens the image lazily and decides once for the whole image how every block is shown
   to the model (:func:`decide_look`): the appearance mode (and ``stain``'s background),
   the resize factor for the objects' diameter, the normalisation statistics and the
   modality;
2. plans blocks (core + halo in input pixels; cores a whole multiple of the output shards);
3. **segments** every block on a worker: read, map the appearance, normalise, resize,
   predict, assemble with the model's own back-end, map the labels back to the block's
   grid, write them to its own slot of a block store and a small done-marker with its
   object table;
4. **matches** the views of neighbouring blocks in their shared regions (workers);
5. **resolves** global ids on the client from the object tables only;
6. **composes** each block core into the output (one writer per shard), with the pyramid
   levels of an OME-Zarr;

and reports progress per block. The model travels to workers as its card path and weights
checksum and is loaded once per worker process, never pickled. Stopped or failed runs leave
the block store and markers in ``<output>.blocks``; running again with the same settings
picks up from the blocks already done, after checking each of them against the block store
(a block whose slot is missing, changed or unreadable, or whose marker is, is segmented
again).

The output is composed in the work folder and moved into place only when complete, so a
killed run never leaves a finished-looking output under the final name. A run holds a lock
(``.<output>.lock``, :class:`~napari_instseg.core.io.staging.OutputLock`) for its whole
duration: a second run on the same output is refused instead of sharing or deleting the
first one's blocks; a lock left by a killed run is taken over.

By default a ``LocalCluster`` is started on this machine (one single-threaded worker per
core) and closed at the end; ``client`` may be a scheduler address (``"tcp://host:8786"``)
or a ``distributed.Client`` the caller owns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
import zipfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import LABEL_DTYPE, InputError
from ..io.provenance import ATTRS_KEY
from ..io.staging import OutputLock
from ..jobs import Job, Progress, stop_requested
from ..predict import PredictConfig
from .plan import BlockPlan, intersect, plan_blocks, shift
from .source import LazyImage, SourceSpec, open_source
from .stitch import BlockObjects, compose, describe_block, lookup, match_views, resolve

#: Block core in 3D (in 2D :func:`auto_core` picks it from the halo).
CORE_3D = (64, 512, 512)
#: Context (pixels) the networks need around an object on top of its own extent.
NETWORK_CONTEXT = 24
#: Seconds between progress events while waiting for workers (how fast Stop is seen).
POLL_SECONDS = 0.25

_log = logging.getLogger(__name__)


# -- what a worker runs on each block ---------------------------------------------------------
@dataclass(frozen=True)
class ModelSegmenter:
    """Segments a block with a model loaded from its files (card path + weights checksum).

    ``low``/``high`` are the whole image's normalisation values per channel (of the
    appearance-mapped values) and ``modality`` its modality; ``appearance`` (a concrete mode,
    never "auto"), ``background`` (``stain``'s ``I0``) and ``factor`` (the resize) are the
    whole image's too: all decided once on the client (:func:`decide_look`), so every block
    sees the image the same way.
    """

    card_path: str
    weights_sha256: str
    backend: str
    knobs: dict
    low: tuple[float, ...]
    high: tuple[float, ...]
    modality: str = ""
    predict: PredictConfig = PredictConfig()
    appearance: str = "as-is"
    background: tuple[float, ...] | None = None
    factor: float = 1.0

    def __call__(self, image: np.ndarray, origin: tuple[int, ...] = ()) -> np.ndarray:
        """Labels on the block's own grid for its ``(C, *read)`` window: the pipeline
        (:func:`~napari_instseg.core.pipeline.prepare`, then
        :func:`~napari_instseg.core.pipeline.segment_request`) with the whole image's
        statistics, modality and resize, and tiles fitted to the block."""
        from ..jobs import run
        from ..pipeline import prepare, segment_request
        from ..predict import fitted_tile
        from ..scale import scaled_shape

        model = _worker_model(self.card_path, self.weights_sha256)
        _use_worker_threads()  # again: loading a model's modules may reset torch's threads
        request = prepare(
            model,
            image,
            channel_axis=0,
            appearance=self.appearance,
            background=self.background,
            statistics=(self.low, self.high),
            modality=self.modality,
            backend=self.backend,
            knobs=self.knobs,
        )
        # Tiles fitted to the (resized) block, up to 640 px (or the tile size asked for when
        # larger): 512-pixel tiles over a 1120-pixel block would cost 1.9x the pixels, fitted
        # ones 1.1x. Larger tiles run slower per pixel on CPU (800²: 1.7x, out of cache).
        tile = fitted_tile(
            scaled_shape(request.image.shape[1:], self.factor),
            tile_max=max(640, self.predict.tile_size),
            halo=self.predict.halo,
            multiple=model.size_multiple,
        )
        config = replace(self.predict, tile_size=tile)
        # ``origin``: grid-based back-ends (the mutex watershed's strides) count from there;
        # the labels come back on the block's input grid, every object kept
        job = segment_request(model, request, config=config, scale=self.factor, origin=origin)
        return run(job).labels


_MODELS: dict[tuple[str, str], Any] = {}


def _worker_model(card_path: str, sha256: str):
    """The model for ``card_path``, loaded once per process; refuses changed weights."""
    key = (card_path, sha256)
    if key not in _MODELS:
        from ..checkpoint import load_model
        from ..pipeline import Model

        card, net = load_model(card_path)
        if card.weights_sha256 and sha256 and card.weights_sha256 != sha256:
            raise InputError(
                f"the model at {card_path} changed since the run started (weights checksum)"
            )
        _MODELS.clear()  # one model per worker at a time
        _MODELS[key] = Model.from_card(card, net, source=card_path)
    return _MODELS[key]


def _use_worker_threads() -> None:
    """Keep torch and numba to the threads dask gave this worker (no oversubscription)."""
    try:
        from distributed import get_worker

        threads = int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass


@dataclass(frozen=True)
class RunFiles:
    """Where a run keeps its pieces (all paths are strings so they pickle everywhere)."""

    work: str  # <output>.blocks
    store: str  # block store: one slot (shard) per block
    output: str  # output zarr store
    labels: tuple[str, ...]  # label array key per pyramid level inside ``output``
    image: tuple[str, ...] = ()  # image array key per level, when the image is copied too
    channel_axis_out: int | None = None  # channel axis of the copied image / label arrays
    #: Where ``output`` (staged in ``work``) goes when complete, and how: "replace" (the
    #: whole store) or "labels" (a label image into the source OME-Zarr's labels group).
    final: str = ""
    publish: str = "replace"

    def marker(self, index: int) -> Path:
        return Path(self.work) / "blocks" / f"{index}.npz"


def slot_digest(labels: np.ndarray) -> str:
    """Checksum of a block's labels as its block-store slot holds them."""
    data = np.ascontiguousarray(labels, dtype="<u4")
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()


class MarkerError(Exception):
    """A done-marker that cannot be read as one (truncated, foreign or corrupt file)."""


def read_marker(path: Path) -> tuple[BlockObjects, str]:
    """A block's object table and slot checksum from its done-marker; never unpickles.

    Raises :class:`MarkerError` for a file that is not a complete marker.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            table = BlockObjects.from_arrays(data)
            digest = str(data["slot_digest"]) if "slot_digest" in data.files else ""
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        # numpy says "pickled data" for any file that is not npy/npz: not a useful hint
        text = "not a numpy archive" if "pickle" in str(err) else str(err) or type(err).__name__
        raise MarkerError(text) from None
    except AttributeError:  # np.load returned a plain array: a .npy, not our .npz
        raise MarkerError("not a marker archive") from None
    return table, digest


def _reset_peak_rss() -> None:
    """Start a new peak-RSS window for this process (Linux: VmHWM via clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    """Peak resident memory of this process since :func:`_reset_peak_rss` (Linux), else
    since it started."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def segment_block(files: RunFiles, plan: BlockPlan, source: SourceSpec, segmenter, index: int):
    """Worker task: segment one block's read region, store it, return its object table."""
    import zarr

    t0 = time.perf_counter()
    _reset_peak_rss()  # the peak reported is this block's (with the worker's baseline)
    _use_worker_threads()
    block = plan.blocks[index]
    image = LazyImage(source).read(block.read)
    bad = ~np.isfinite(image)
    if bad.any():
        where = np.argwhere(bad.any(axis=0))[0] + [s.start for s in block.read]
        raise InputError(
            f"{source.path} holds NaN or infinite values (block {index}, first at pixel "
            f"{tuple(int(v) for v in where)}); fill or mask them before segmenting"
        )
    origin = tuple(s.start for s in block.read)
    labels = np.asarray(segmenter(image, origin)).astype(LABEL_DTYPE, copy=False)
    if labels.shape != plan.read_shape:
        raise ValueError(f"the segmenter returned {labels.shape}, expected {plan.read_shape}")
    zarr.open_array(files.store, mode="r+")[index] = labels
    table = describe_block(labels, block, plan.shape)
    marker = files.marker(index)
    tmp = marker.with_suffix(".tmp.npz")
    np.savez(tmp, **table.to_arrays(), slot_digest=np.array(slot_digest(labels)))
    os.replace(tmp, marker)  # the marker appears only once the slot is written
    return {
        "index": index,
        "seconds": time.perf_counter() - t0,
        "objects": int(table.ids.size),
        "peak_rss_mb": _peak_rss_mb(),
        "pid": os.getpid(),
    }


def verify_block(files: RunFiles, index: int) -> str:
    """Worker task: why block ``index`` of an earlier run cannot be trusted ("" if it can):
    its marker must read and its slot in the block store must hold what the marker's
    checksum says (a deleted or rewritten shard reads back as something else)."""
    why = _distrust(files, index)
    if why:  # a damaged shard would also break writing the block anew: start it empty
        import zarr

        store = zarr.open_array(files.store, mode="r")
        coords = (index,) + (0,) * (store.ndim - 1)
        (Path(files.store) / store.metadata.encode_chunk_key(coords)).unlink(missing_ok=True)
    return why


def _distrust(files: RunFiles, index: int) -> str:
    import zarr

    try:
        _, digest = read_marker(files.marker(index))
    except MarkerError as err:
        return f"its done-marker {files.marker(index).name} cannot be read ({err})"
    if not digest:
        return "its done-marker has no checksum of the block (an older run)"
    try:
        labels = zarr.open_array(files.store, mode="r")[index]
    except Exception as err:  # codecs raise many kinds of errors for a damaged shard
        return f"its slot in the block store cannot be read ({type(err).__name__}: {err})"
    if slot_digest(labels) != digest:
        return "its slot in the block store is missing or changed"
    return ""


def match_blocks(files: RunFiles, plan: BlockPlan, a: int, b: int):
    """Worker task: the agreeing views of blocks ``a`` and ``b`` in their shared region."""
    import zarr

    t0 = time.perf_counter()
    store = zarr.open_array(files.store, mode="r")
    ba, bb = plan.blocks[a], plan.blocks[b]
    region = intersect(ba.read, bb.read)
    la = store[(a, *shift(region, ba.read))]
    lb = store[(b, *shift(region, bb.read))]
    ids_a, ids_b, _ = match_views(la, lb)
    return a, b, ids_a, ids_b, time.perf_counter() - t0


def compose_block(files: RunFiles, plan: BlockPlan, index: int, luts: dict, image_source):
    """Worker task: write the final labels of block ``index``'s core (and its pyramid)."""
    import zarr

    from ..io.ome_zarr import halve_mean, halve_stride

    t0 = time.perf_counter()
    _reset_peak_rss()
    store = zarr.open_array(files.store, mode="r")
    block = plan.blocks[index]
    own = store[(index, *block.core_in_read())]
    others = []
    for other in plan.overlapping(block.core):
        if other.index == index:
            continue
        region = intersect(other.read, block.core)
        labels = store[(other.index, *shift(region, other.read))]
        others.append((labels, luts[other.index], shift(region, block.core)))
    labels = compose(own, luts[index], others)
    lead = labels[None] if files.channel_axis_out is not None else labels
    _write_levels(files, files.labels, block.core, lead, halve_stride)
    if files.image:
        image = LazyImage(image_source).read(block.core, raw=True)
        if image_source.channel_axis is None:
            image = image[0]
        _write_levels(files, files.image, block.core, image, halve_mean)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return {
        "index": index,
        "ids": ids.astype(LABEL_DTYPE),
        "counts": counts.astype(np.int64),
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _write_levels(files: RunFiles, keys, core, data: np.ndarray, halve) -> None:
    """Write ``data`` (a block core at level 0, leading axes first) and its ``halve``-d
    copies into the pyramid arrays ``keys``."""
    import zarr

    nd = len(core)
    lead = (slice(None),) * (data.ndim - nd)
    for level, key in enumerate(keys):
        if level:
            data = halve(data)
        f = level_factors(nd, level)
        region = tuple(
            slice(s.start // k, s.start // k + n)
            for s, k, n in zip(core, f, data.shape[-nd:], strict=True)
        )
        arr = zarr.open_array(files.output, path=key or None, mode="r+")
        arr[lead + region] = data.astype(arr.dtype, copy=False)


def relabel_block(files: RunFiles, plan: BlockPlan, index: int, remap: np.ndarray):
    """Worker task: renumber the block core's labels (all levels) through ``remap``."""
    import zarr

    core = plan.blocks[index].core
    nd = len(core)
    for level, key in enumerate(files.labels):
        arr = zarr.open_array(files.output, path=key or None, mode="r+")
        f = level_factors(nd, level)
        region = tuple(
            slice(-(-s.start // k), min(-(-s.stop // k), n))
            for s, k, n in zip(core, f, arr.shape[-nd:], strict=True)
        )
        region = (slice(None),) * (arr.ndim - nd) + region
        arr[region] = lookup(remap, arr[region])


# -- the job --------------------------------------------------------------------------------
@dataclass
class LargeResult:
    """What a blockwise run made and how it went."""

    output: Path
    n_objects: int
    plan: dict
    stats: dict[str, int]
    seconds: dict[str, float]
    blocks: list[dict] = field(default_factory=list)  # per segmented block: seconds, rss, ...
    resumed_blocks: int = 0
    workers: int = 0
    #: How the blocks saw the image (decided once): the appearance (mode, asked, reason,
    #: colour, background) and the diameter plan (factor, diameter, source, ...); empty
    #: for a custom segmenter.
    appearance: dict = field(default_factory=dict)
    diameter: dict = field(default_factory=dict)

    def look_text(self) -> str:
        """One line: the diameter used and the appearance, as ``segment`` prints them."""
        from ..pipeline import describe_look

        return describe_look({"diameter": self.diameter, "appearance": self.appearance})

    def summary(self) -> str:
        s = self.stats
        return (
            f"{self.n_objects} objects in {self.plan['blocks']} blocks "
            f"({self.resumed_blocks} resumed); {s.get('joined_objects', 0)} seen by several "
            f"blocks, {s.get('wider_than_halo', 0)} wider than the halo"
        )


def auto_halo(object_size: float | None, ndim: int, *, factor: float = 1.0) -> tuple[int, ...]:
    """Halo (input pixels) from the objects' diameter as the network sees them
    (``object_size``, model pixels) and the resize ``factor`` (model pixels per input
    pixel): one diameter plus context for the network, rounded up to 16 and at least 48
    model pixels (48 for nuclei of 17 px, 96 for cells of 66 px), then in input pixels
    (rounded up to 16). Objects wider than the halo are still stitched, from matched parts."""
    size = float(object_size or 32.0)
    h = max(48, int(16 * math.ceil((size + NETWORK_CONTEXT) / 16)))
    if factor != 1.0:
        h = int(16 * math.ceil(h / factor / 16))
    return (h,) * ndim


def auto_core(halo: tuple[int, ...], *, factor: float = 1.0) -> tuple[int, ...]:
    """Block core (input pixels) for a halo (input pixels) and the resize ``factor``: in 2D
    the smallest multiple of 1024 model pixels at least 17 halos wide, so the halos add at
    most 25 % to the pixels read ((1 + 2h/c)² <= 1.25); in 3D :data:`CORE_3D` model pixels.
    A resized run gets the core of the same size in model pixels (a worker's memory follows
    the resized block), in input pixels rounded to 256 (2D) or 16 (3D)."""
    if len(halo) == 3:
        model = CORE_3D
    else:
        side = 1024 * max(1, math.ceil(17 * max(halo) * factor / 1024))
        model = (side, side)
    if factor == 1.0:
        return model
    step = 256 if len(halo) == 2 else 16
    return tuple(max(step, step * round(c / factor / step)) for c in model)


#: The full-resolution window (at the image's centre, at most this large) on which the
#: appearance and, for ``diameter="auto"``, the objects' diameter are decided for every block.
DECISION_WINDOW = (16, 1024, 1024)


def centre_window(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The image's centre region of at most :data:`DECISION_WINDOW`."""
    out = []
    for n, w in zip(shape, DECISION_WINDOW[-len(shape) :], strict=True):
        size = min(n, w)
        start = (n - size) // 2
        out.append(slice(start, start + size))
    return tuple(out)


@dataclass(frozen=True)
class Look:
    """How every block sees the image, decided once for the whole image
    (:func:`decide_look`)."""

    appearance: dict  # Appearance.as_dict(): the concrete mode and why
    background: tuple[float, ...] | None  # stain's I0 per colour channel
    diameter: dict  # ScalePlan.as_dict() (+ "passes" for "auto")
    low: tuple[float, ...]  # normalisation of the appearance-mapped values, per channel
    high: tuple[float, ...]
    modality: str
    window: list  # [[start, stop], ...] of the window the decisions were made on

    @property
    def factor(self) -> float:
        return float(self.diameter.get("factor", 1.0))

    def object_size(self, card_size: float | None) -> float | None:
        """The objects' diameter as the network sees them (model pixels): the diameter
        given or estimated, resized; else the card's."""
        d = self.diameter.get("diameter")
        return d * self.factor if d else card_size


def decide_look(
    model,
    image: LazyImage,
    *,
    appearance: str = "auto",
    diameter: float | str | None = "auto",
    config: PredictConfig = PredictConfig(),
    backend: str | None = None,
    knobs: dict | None = None,
) -> Job[Look | None]:
    """Decide once, for every block, how a large image is shown to ``model``.

    * **Appearance**: ``auto`` is resolved to one mode on the image's centre window at full
      resolution (:func:`centre_window`); ``stain``'s ``I0`` is taken from the whole image's
      strided sample, as are the normalisation percentiles, of the appearance-mapped values.
    * **Scale**: ``diameter="auto"`` (a 2D image and a card with a working diameter) runs
      :func:`~napari_instseg.core.pipeline.segment_image` on the centre window and keeps its
      plan; a number or ``"off"`` is planned directly
      (:func:`~napari_instseg.core.scale.plan_scale`); ``auto`` on a 3D image keeps the
      native scale, with a note.

    A stoppable job (the window's prediction yields progress); returns None when stopped.
    """
    from ..appearance import check_appearance, split_colour, stain_background
    from ..modality import detect_modality
    from ..pipeline import adapt_image, normalisation_statistics, segment_image
    from ..scale import check_diameter, plan_scale
    from .source import global_sample

    check_appearance(appearance)
    diameter = check_diameter(diameter, image.spatial_shape)
    sample = global_sample(image)
    region = centre_window(image.spatial_shape)
    window = image.read(region)
    _, how = adapt_image(model, window, channel_axis=0, appearance=appearance)
    background = None
    if how.mode == "stain":
        rgb, _ = split_colour(sample, ndim=image.ndim, channel_axis=0)
        background = tuple(float(v) for v in stain_background(rgb))
    mapped, _ = adapt_image(
        model, sample, channel_axis=0, appearance=how.mode, background=background
    )
    lo, hi = normalisation_statistics(model, mapped)
    looks = detect_modality(sample, channel_axis=0)
    working = model.card.working_diameter
    if diameter == "auto" and working and image.ndim == 2:
        seg = yield from segment_image(
            model,
            window,
            config=config,
            backend=backend,
            knobs=knobs,
            channel_axis=0,
            appearance=how.mode,
            diameter="auto",
        )
        if seg is None:
            return None
        plan = dict(seg.prediction.info["diameter"])
    else:
        plan = plan_scale(
            diameter, working_diameter=working, image_shape=image.spatial_shape
        ).as_dict()
    return Look(
        appearance=how.as_dict(),
        background=background,
        diameter=plan,
        low=tuple(float(v) for v in lo),
        high=tuple(float(v) for v in hi),
        modality=looks.modality,
        window=[[sl.start, sl.stop] for sl in region],
    )


class DaskClient:
    """A dask client: the caller's, one connected to an address, or a fresh LocalCluster."""

    def __init__(self, client=None, *, n_workers: int | None = None, memory_limit="auto"):
        import logging

        from distributed import Client, LocalCluster

        self._own: list = []
        if client is None:
            import dask

            from .main_guard import refuse_unguarded_main

            refuse_unguarded_main()  # before a worker process imports the script again

            # dask sets MALLOC_TRIM_THRESHOLD_=65536 in workers to return memory eagerly;
            # with torch's large short-lived buffers that makes inference ~1.6x slower
            # (page faults; benchmarks/large.py). Workers here keep glibc's default.
            with dask.config.set(
                {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
            ):
                cluster = LocalCluster(
                    n_workers=n_workers or max(1, os.cpu_count() or 1),
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    memory_limit=memory_limit,
                    silence_logs=logging.ERROR,
                )
            self.client = Client(cluster)
            self._own = [self.client, cluster]
        elif isinstance(client, str):
            try:
                self.client = Client(client, timeout="30s")
            except OSError as err:
                raise InputError(f"cannot reach the dask scheduler at {client}: {err}") from err
            self._own = [self.client]
        else:
            self.client = client

    def close(self) -> None:
        for thing in self._own:
            try:
                thing.close()
            except Exception:  # closing a half-started cluster may fail in several ways
                pass


def _identity(plan, source, segmenter, labels_name) -> dict:
    seg = asdict(segmenter) if hasattr(segmenter, "__dataclass_fields__") else repr(segmenter)
    return json.loads(
        json.dumps(
            {
                "plan": plan.describe(),
                "source": asdict(source),
                "segmenter": seg,
                "labels": labels_name,
            },
            default=str,
        )
    )


def _slot_chunk(n: int) -> int:
    """Inner chunk of a block-store slot axis: a divisor of ``n`` from 128 to 512, or ``n``."""
    for size in range(min(n, 512), 127, -1):
        if n % size == 0:
            return size
    return n


def _same_run(work: Path, identity: dict) -> bool:
    """Whether ``work`` holds the blocks of a run with exactly these settings."""
    run_file = work / "run.json"
    return run_file.exists() and json.loads(run_file.read_text()) == identity


def _prepare_work(work: Path, identity: dict, plan: BlockPlan, *, resume: bool) -> set[int]:
    """Create (or reuse) the block store; return the blocks already done."""
    import zarr

    run_file = work / "run.json"
    if work.exists():
        if resume and _same_run(work, identity):
            done = set()
            for marker in (work / "blocks").glob("*.npz"):
                if marker.name.endswith(".tmp.npz"):
                    continue
                try:
                    done.add(int(marker.stem))
                except ValueError:
                    continue
            return done
        if not ((work / "store.zarr").exists() or run_file.exists()):
            raise InputError(f"{work} exists and is not a block store of ours")
        shutil.rmtree(work)  # another run's blocks, or resume=False
    (work / "blocks").mkdir(parents=True)
    zarr.create_array(
        store=str(work / "store.zarr"),
        shape=(len(plan), *plan.read_shape),
        dtype=LABEL_DTYPE,
        chunks=(1, *(_slot_chunk(n) for n in plan.read_shape)),
        shards=(1, *plan.read_shape),
        fill_value=0,
        zarr_format=3,
    )
    run_file.write_text(json.dumps(identity, indent=1))
    return set()


def level_factors(ndim: int, level: int) -> tuple[int, ...]:
    """Downsampling of pyramid ``level``: Y and X halve per level, Z is kept."""
    return (1,) * (ndim - 2) + (2**level,) * 2


def level_shape(shape: tuple[int, ...], level: int) -> tuple[int, ...]:
    return tuple(-(-s // f) for s, f in zip(shape, level_factors(len(shape), level), strict=True))


def _pyramid_levels(plan: BlockPlan) -> int:
    """OME-Zarr levels for the image, as many as keep every block core on whole pixels."""
    from ..io.ome_zarr import default_levels

    levels = default_levels(plan.shape)
    while levels > 1 and any(c % 2 ** (levels - 1) for c in plan.core[-2:]):
        levels -= 1
    return levels


def _sharded_array(group, key, plan: BlockPlan, level: int, dtype, lead: tuple, names):
    """An empty array of pyramid ``level`` sharded by the block cores (one writer each):
    ``group[key]``, or a store of its own at ``group`` when ``key`` is None."""
    import zarr

    f = level_factors(len(plan.shape), level)
    shape = level_shape(plan.shape, level)
    shard = tuple(min(s, -(-c // k)) for s, c, k in zip(shape, plan.core, f, strict=True))
    chunk = tuple(math.gcd(s, c) for s, c in zip(shard, plan.chunk, strict=True))
    spec = {
        "shape": lead + shape,
        "dtype": dtype,
        "chunks": (1,) * len(lead) + chunk,
        "shards": lead + shard,
        "fill_value": 0,
        "dimension_names": names,
        "overwrite": True,
    }
    if key is None:
        return zarr.create_array(store=group, zarr_format=3, **spec)
    return group.create_array(key, **spec)


def check_target(output: Path, overwrite: bool) -> None:
    from ..io.staging import is_zarr_store

    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; pass overwrite (--overwrite) to replace it")
    if output.exists() and not is_zarr_store(output):
        raise InputError(f"{output} exists and is not a zarr store; not replacing it")


def _check_output(output: Path, image: LazyImage, *, labels_name: str, overwrite: bool) -> None:
    """Refuse an output that must not be replaced, before anything is written."""
    from ..io.ome_zarr import is_ome_zarr
    from ..io.staging import clean_stale_staging

    clean_stale_staging(output)  # a killed run's half-moved output is put back first
    if _in_place(output, image):
        if not is_ome_zarr(output):
            raise InputError(f"{output} is not an OME-Zarr image")
        if labels_name in _listed_labels(output) and not overwrite:
            raise InputError(
                f"{output} already has labels {labels_name!r}; pass overwrite (--overwrite) "
                "to replace them"
            )
        return
    check_target(output, overwrite)


def _in_place(output: Path, image: LazyImage) -> bool:
    """Whether the labels go next to the image of the source OME-Zarr itself."""
    return (
        output.name.lower().endswith(".ome.zarr")
        and output.exists()
        and Path(image.spec.path).resolve() == output.resolve()
    )


def _listed_labels(output: Path) -> list[str]:
    import zarr

    root = zarr.open_group(str(output), mode="r")
    if "labels" not in root:
        return []
    return list(dict(root["labels"].attrs).get("ome", {}).get("labels", []))


def _create_output(
    output: Path,
    work: Path,
    plan: BlockPlan,
    image: LazyImage,
    *,
    labels_name: str,
    attrs: dict,
) -> RunFiles:
    """Create the (empty, sharded) output arrays, staged in ``work``, and say where they
    are and where they go when complete.

    ``.zarr``: one labels array. ``.ome.zarr``: the image pyramid copied plus
    ``labels/<name>`` with the same levels; or, when ``output`` is the source OME-Zarr, a
    label image to move into its ``labels`` group, with as many levels as match its image.
    """
    import zarr

    from ..io.ome_zarr import (
        image_attrs,
        label_image_attrs,
        labels_group_attrs,
        ome_axes_and_scales,
    )

    store = str(work / "store.zarr")
    ndim = len(plan.shape)
    if not output.name.lower().endswith(".ome.zarr"):
        staged = work / "output.zarr"
        shutil.rmtree(staged, ignore_errors=True)  # a stopped run's: composed again anyway
        arr = _sharded_array(str(staged), None, plan, 0, LABEL_DTYPE, (), list("zyx"[-ndim:]))
        arr.attrs[ATTRS_KEY] = attrs
        return RunFiles(str(work), store, str(staged), ("",), final=str(output))

    has_channel = image.spec.channel_axis is not None
    lead = (1,) if has_channel else ()
    if _in_place(output, image):
        source = zarr.open_group(str(output), mode="r")
        ms = dict(source.attrs).get("ome", dict(source.attrs))["multiscales"][0]
        axes = ms["axes"]
        levels = 1
        for k, d in enumerate(ms["datasets"][1:], start=1):
            same = tuple(source[d["path"]].shape[len(lead) :]) == level_shape(plan.shape, k)
            if not same or any(c % 2**k for c in plan.core[-2:]):
                break
            levels += 1
        scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"][:levels]]
        staged = work / "labels.zarr"
        shutil.rmtree(staged, ignore_errors=True)
        group = zarr.open_group(str(staged), mode="w", zarr_format=3)
        group.attrs.update(label_image_attrs(labels_name, axes, scales[:levels], attrs))
        names = [a["name"] for a in axes]
        for k in range(levels):
            _sharded_array(group, str(k), plan, k, LABEL_DTYPE, lead, names)
        return RunFiles(
            str(work),
            store,
            str(staged),
            tuple(str(k) for k in range(levels)),
            (),
            0 if has_channel else None,
            final=str(output / "labels" / labels_name),
            publish="labels",
        )

    levels = _pyramid_levels(plan)
    axes, scales = ome_axes_and_scales((1.0,) * ndim, has_channel=has_channel, levels=levels)
    staged = work / "output.ome.zarr"
    shutil.rmtree(staged, ignore_errors=True)
    root = zarr.open_group(str(staged), mode="w", zarr_format=3)
    root.attrs.update(image_attrs(Path(image.spec.path).name.split(".")[0], axes, scales))
    names = [a["name"] for a in axes]
    image_keys = tuple(str(k) for k in range(levels))
    channels = (image.channels,) if has_channel else ()
    for k in range(levels):
        _sharded_array(root, str(k), plan, k, image.array.dtype, channels, names)
    labels_group = root.require_group("labels")
    labels_group.attrs.update(labels_group_attrs([labels_name]))
    group = labels_group.require_group(labels_name)
    group.attrs.update(label_image_attrs(labels_name, axes, scales[:levels], attrs))
    for k in range(levels):
        _sharded_array(group, str(k), plan, k, LABEL_DTYPE, lead, names)
    keys = tuple(f"labels/{labels_name}/{k}" for k in range(levels))
    return RunFiles(
        str(work),
        store,
        str(staged),
        keys,
        image_keys,
        0 if has_channel else None,
        final=str(output),
    )


def _publish(files: RunFiles, labels_name: str, *, overwrite: bool) -> None:
    """Move the complete, staged output into place (the last step of a run)."""
    import zarr

    from ..io.ome_zarr import labels_group_attrs
    from ..io.staging import move_into_place

    staged, final = Path(files.output), Path(files.final)
    if files.publish == "labels":
        # The label image first, then its listing: a kill in between leaves labels that
        # no reader lists (and the next run replaces), never listed labels that are not there.
        root = zarr.open_group(str(final.parent.parent), mode="r+")
        labels_group = root.require_group("labels")
        listed = list(dict(labels_group.attrs).get("ome", {}).get("labels", []))
        if labels_name in listed and not overwrite:
            raise InputError(
                f"{final.parent.parent} got labels {labels_name!r} while this run worked; "
                f"the result is kept in {staged}"
            )
        move_into_place(staged, final)
        labels_group.attrs.update(
            labels_group_attrs(listed + [labels_name] * (labels_name not in listed))
        )
        return
    if (final.exists() or final.is_symlink()) and not overwrite:
        raise InputError(
            f"{final} appeared while this run worked; the result is kept in {staged}; move it "
            "yourself or run again with overwrite (--overwrite)"
        )
    move_into_place(staged, final)


def _read_table(files: RunFiles, index: int) -> BlockObjects:
    try:
        return read_marker(files.marker(index))[0]
    except MarkerError as err:
        raise InputError(
            f"the done-marker {files.marker(index)} cannot be read ({err}); run again to "
            "segment that block anew"
        ) from None


def _poll(client, futures: dict, stage: str, total: int, done_before: int = 0):
    """Wait for ``futures`` (key -> future), yielding progress; returns their results by key,
    or None when the job was asked to stop (pending work is then cancelled)."""
    from distributed import wait

    results: dict = {}
    pending = dict(futures)
    command = yield Progress(stage, done_before, total)
    while pending:
        if stop_requested(command):
            client.cancel(list(pending.values()))
            return None
        try:
            wait(list(pending.values()), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass
        for key, fut in list(pending.items()):
            if fut.status == "finished":
                results[key] = fut.result()
                del pending[key]
            elif fut.status in ("error", "cancelled"):
                err = fut.exception() if fut.status == "error" else None
                client.cancel([f for k, f in pending.items() if k != key])
                if isinstance(err, InputError):  # a bad input seen by a worker: the user's
                    raise InputError(str(err)) from err
                if err is not None:
                    raise RuntimeError(f"{stage} {key} failed: {err}") from err
                # The cluster lost the task (a worker died, or the scheduler lost this
                # client): the environment's fault, and the finished blocks are kept.
                raise ConnectionError(
                    f"{stage} {key} was cancelled by the cluster (a worker died or lost "
                    "contact); run the same command again to resume from the finished blocks"
                )
        command = yield Progress(stage, done_before + len(results), total)
    return results


def _resolve_model(model):
    """(Model, card path, weights checksum) from a Model, a model name or a card path."""
    from ..checkpoint import resolve_model_files, sha256_file
    from ..pipeline import Model, load_model
    from ..zoo import find_model_path

    loaded = model if isinstance(model, Model) else load_model(str(model))
    if not loaded.source:
        raise InputError("this model has no files to load on workers; save it first")
    card_path, weights = resolve_model_files(find_model_path(loaded.source))
    sha = loaded.card.weights_sha256 or sha256_file(weights)
    return loaded, str(card_path.resolve()), sha


def segment_large(
    source,
    output: str | Path,
    model=None,
    *,
    segmenter=None,
    backend: str | None = None,
    knobs: dict | None = None,
    core: int | tuple[int, ...] | None = None,
    halo: int | tuple[int, ...] | str = "auto",
    shard: int | tuple[int, ...] | None = None,
    predict: PredictConfig = PredictConfig(),
    channel_axis: int | None = None,
    client=None,
    n_workers: int | None = None,
    resume: bool = True,
    overwrite: bool = False,
    labels_name: str = "labels",
    keep_work: bool = False,
    appearance: str = "auto",
    diameter: float | str | None = "auto",
    source_image: str | None = None,
) -> Job[LargeResult | None]:
    """Segment an image of any size block by block on dask.distributed.

    Parameters
    ----------
    source : str, Path or LazyImage
        A TIFF, zarr array (v2/v3) or OME-Zarr image, read lazily.
    output : str or Path
        ``NAME.zarr`` for one sharded zarr v3 uint32 labels array, or
        ``NAME.ome.zarr`` for OME-Zarr: a new image + labels pyramid, or, when it is the
        source OME-Zarr itself, labels added next to its image.
    model : Model, str or Path
        The model (shipped name, card path or loaded Model with files). Its back-end and
        knobs are used unless ``backend``/``knobs`` say otherwise.
    segmenter : callable, optional
        Instead of a model: a picklable ``f(image, origin) -> labels`` for a block's read
        window (``(C, *read)`` float32, and its first pixel's image coordinates).
    core, halo, shard : int or tuple
        Block plan (see :func:`~napari_instseg.core.large.plan.plan_blocks`). ``halo="auto"``
        takes it from the model's typical object size (:func:`auto_halo`); the default core
        keeps the halos' share of the work under 25 % (:func:`auto_core`).
    predict : PredictConfig
        Tiling and device of the network inside each block (tile sizes in model pixels,
        after any resize).
    client : None, str or distributed.Client
        None: a LocalCluster with ``n_workers`` single-threaded workers (default: one per
        core), closed at the end. A string: a scheduler address. A Client: used as is.
    resume : bool
        Reuse the blocks a stopped or failed run with the same settings already did.
    overwrite : bool
        Replace an existing output (or labels of the same name in the source OME-Zarr).
    appearance : {"auto", "as-is", "invert", "stain"}
        As for :func:`~napari_instseg.core.pipeline.segment_image`, decided once for the
        whole image (:func:`decide_look`): every block is mapped with the same mode and,
        for ``stain``, the same background.
    diameter : "auto", "off" or float
        The objects' diameter in input pixels (as for ``segment_image``); the resize factor
        is decided once (``auto``: on the centre window) and every block is resized by it,
        segmented, and its labels mapped back to the input grid before stitching. The block
        plan (core, halo) stays in input pixels; ``halo="auto"`` covers the objects at the
        input scale. Both are ignored with a custom ``segmenter``.
    source_image : str, optional
        The image's name in the output's provenance (default: the source file's stem; give
        it when the source is a staged copy of an image held in memory).

    Yields
    ------
    Progress for the stages ``start``, ``segment``, ``match``, ``compose`` (and ``relabel``).

    Returns
    -------
    LargeResult, or None when stopped (the block store is kept for resuming).
    """
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    output = Path(output)
    if not output.name.lower().endswith(".zarr"):
        raise InputError(f"write large labels to a .zarr or .ome.zarr folder, not {output}")
    # Held for the whole run: a second run on this output must not share or delete this
    # one's blocks (a lock left by a killed run is taken over).
    with OutputLock(output):
        image = (
            source
            if isinstance(source, LazyImage)
            else open_source(source, channel_axis=channel_axis)
        )
        ndim = image.ndim
        attrs: dict[str, Any] = {"source": image.spec.path}
        factor = 1.0
        if segmenter is None:
            if model is None:
                raise InputError("give a model (or a segmenter) for blockwise segmentation")
            loaded, card_path, sha = _resolve_model(model)
            if loaded.card.ndim != ndim:
                raise InputError(
                    f"{loaded.card.name} is a {loaded.card.ndim}D model but the image has {ndim} "
                    f"spatial axes (shape {image.spatial_shape})"
                )
            colour_to_one = loaded.card.in_channels == 1 and image.channels in (3, 4)
            if loaded.card.in_channels != image.channels and not colour_to_one:
                raise InputError(
                    f"{loaded.card.name} takes {loaded.card.in_channels} channel(s), the image has "
                    f"{image.channels}; choose the channel axis or another model"
                )
            name = backend or loaded.card.backend
            cfg = loaded.backend_config(name, knobs)  # refuses bad knobs before any work
            look = yield from decide_look(
                loaded,
                image,
                appearance=appearance,
                diameter=diameter,
                config=predict,
                backend=name,
                knobs=knobs,
            )
            if look is None:
                return None
            from ..configs import config_to_dict
            from ..io import image_stem
            from ..io.provenance import provenance

            segmenter = ModelSegmenter(
                card_path,
                sha,
                name,
                dict(knobs or {}),
                look.low,
                look.high,
                look.modality,
                predict,
                look.appearance["mode"],
                look.background,
                look.factor,
            )
            factor = look.factor
            if halo == "auto":
                halo = auto_halo(look.object_size(loaded.card.object_size), ndim, factor=factor)
            seen = {
                "modality": look.modality,
                "diameter": look.diameter,
                "appearance": {**look.appearance, "background": look.background},
            }
            attrs.update(
                provenance(
                    loaded,
                    backend=name,
                    knobs=config_to_dict(cfg),
                    info=seen,
                    source_image=source_image or image_stem(image.spec.path),
                )
            )
            attrs.update(
                {
                    "normalisation": {"low": list(look.low), "high": list(look.high)},
                    "decided_on": look.window,
                }
            )
        elif halo == "auto":
            halo = auto_halo(None, ndim)
        halo_t = (int(halo),) * ndim if isinstance(halo, int | float) else tuple(halo)
        plan = plan_blocks(
            image.spatial_shape,
            core=core or auto_core(halo_t, factor=factor),
            halo=halo,
            shard=shard,
        )
        attrs["blocks"] = plan.describe()
        work = output.with_name(output.name + ".blocks")
        identity = _identity(plan, image.spec, segmenter, labels_name)
        # The output is checked before the work folder is touched: a refused output must not
        # cost a stopped run its blocks. It is composed in the work folder and moved into
        # place at the end, so nothing under the final name looks done before it is.
        _check_output(output, image, labels_name=labels_name, overwrite=overwrite)
        done = _prepare_work(work, identity, plan, resume=resume)
        files = _create_output(output, work, plan, image, labels_name=labels_name, attrs=attrs)
        seconds["plan"] = time.perf_counter() - t_start

        with ExitStack() as stack:
            if stop_requested((yield Progress("start", 0, 1))):
                return None
            t0 = time.perf_counter()
            cluster = DaskClient(client, n_workers=n_workers)
            stack.callback(cluster.close)
            dask = cluster.client
            n_running = len(dask.scheduler_info().get("workers", {}))
            seconds["start"] = time.perf_counter() - t0

            # 0. an earlier run's blocks are checked against the block store, not trusted
            if done:
                futures = {i: dask.submit(verify_block, files, i, pure=False) for i in done}
                verdicts = yield from _poll(dask, futures, "check", len(done))
                if verdicts is None:
                    return None
                for i, why in sorted(verdicts.items()):
                    if why:
                        _log.warning("block %d of %s is segmented again: %s", i, output, why)
                        files.marker(i).unlink(missing_ok=True)
                        done.discard(i)

            # 1. segment every block not done yet
            t0 = time.perf_counter()
            todo = [b.index for b in plan.blocks if b.index not in done]
            futures = {
                i: dask.submit(
                    segment_block,
                    files,
                    plan,
                    image.spec,
                    segmenter,
                    i,
                    key=f"segment-{i}-{os.urandom(4).hex()}",
                    pure=False,
                )
                for i in todo
            }
            block_info = yield from _poll(dask, futures, "segment", len(plan), len(done))
            if block_info is None:
                return None
            seconds["segment"] = time.perf_counter() - t0

            # 2. match the views of neighbouring blocks
            t0 = time.perf_counter()
            tables = {b.index: _read_table(files, b.index) for b in plan.blocks}
            pairs = plan.pairs()
            futures = {
                (a, b): dask.submit(match_blocks, files, plan, a, b, pure=False) for a, b in pairs
            }
            matches = yield from _poll(dask, futures, "match", len(pairs))
            if matches is None:
                return None
            resolution = resolve(plan, tables, [m[:4] for m in matches.values()])
            seconds["match"] = time.perf_counter() - t0

            # 3. compose each block core into the output (one writer per shard)
            t0 = time.perf_counter()
            futures = {}
            for b in plan.blocks:
                near = {o.index: resolution.luts[o.index] for o in plan.overlapping(b.core)}
                futures[b.index] = dask.submit(
                    compose_block, files, plan, b.index, near, image.spec, pure=False
                )
            composed = yield from _poll(dask, futures, "compose", len(plan))
            if composed is None:
                return None
            seconds["compose"] = time.perf_counter() - t0
            # Compute time of every task of this run (one worker thread each).
            seconds["tasks"] = (
                sum(d["seconds"] for d in block_info.values())
                + sum(m[4] for m in matches.values())
                + sum(d["seconds"] for d in composed.values())
            )

            # 4. ids that no pixel kept (all painted over) leave gaps: renumber if any
            counts = np.zeros(resolution.n_objects + 1, np.int64)
            for info in composed.values():
                counts[info["ids"]] += info["counts"]
            present = counts[1:] > 0
            n_objects = int(present.sum())
            if n_objects != resolution.n_objects:
                t0 = time.perf_counter()
                remap = np.zeros(resolution.n_objects + 1, LABEL_DTYPE)
                remap[1:][present] = np.arange(1, n_objects + 1, dtype=LABEL_DTYPE)
                futures = {
                    b.index: dask.submit(relabel_block, files, plan, b.index, remap, pure=False)
                    for b in plan.blocks
                }
                if (yield from _poll(dask, futures, "relabel", len(plan))) is None:
                    return None
                seconds["relabel"] = time.perf_counter() - t0

        import zarr

        key = files.labels[0]
        label_node = (
            zarr.open_array(files.output, mode="r+")
            if not key
            else zarr.open_group(files.output, path=key.rpartition("/")[0] or None, mode="r+")
        )
        stats = dict(resolution.stats, objects=n_objects)
        meta = dict(label_node.attrs.get(ATTRS_KEY, {}))
        meta.update({"objects": n_objects, "stitching": stats})
        label_node.attrs[ATTRS_KEY] = json.loads(json.dumps(meta, default=str))
        _publish(files, labels_name, overwrite=overwrite)
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
        seconds["total"] = time.perf_counter() - t_start
        return LargeResult(
            output=output,
            n_objects=n_objects,
            plan=plan.describe(),
            stats=stats,
            seconds=seconds,
            blocks=sorted(block_info.values(), key=lambda d: d["index"]),
            resumed_blocks=len(done),
            workers=n_running,
            appearance=attrs.get("appearance", {}),
            diameter=attrs.get("diameter", {}),
        )
