"""Checkpoints: safetensors weights + a JSON model card. Nothing here ever unpickles.

A model is two files side by side, ``NAME.safetensors`` and ``NAME.json``. The card says what
the weights are (method and its config, input normalisation, expected object size), how they
were made (data, recipe, parent model), how good they are (metrics) and which post-processing
knobs to use by default.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import InputError

CARD_FORMAT = 1
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # raw pickle protocol 2+, torch.save zip archive


class CheckpointError(InputError):
    """A checkpoint or model card that cannot be used, with a message meant for the user."""


def _finite(value):
    """``value`` with every NaN or infinite float inside it replaced by None."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True)
class ModelCard:
    """What a set of weights is, how it was made and how well it does."""

    name: str
    method: str
    method_config: dict[str, Any]
    backend: str
    backend_config: dict[str, Any] = field(default_factory=dict)
    normalisation: dict[str, Any] = field(
        default_factory=lambda: {"kind": "percentile", "low": 1.0, "high": 99.8}
    )
    modality: str = ""
    #: Median equivalent diameter (pixels) of the objects the model learnt from: its training
    #: masks, or a fine-tuned model's annotations (``core.scale.median_diameter``).
    object_size: float | None = None
    #: The object diameter (pixels) at which the model segments best, measured on resized val
    #: images (``benchmarks/scale.py --working``): a number, or a ``[low, high]`` range inside
    #: which images keep their scale; ``diameter="auto"`` resizes images to it.
    working_diameter: float | list[float] | None = None
    pixel_size: float | None = None  # micrometres per pixel, when known
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    description: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    weights_sha256: str = ""
    weights_dtype: str = "float32"  # float16 halves shipped files; loading casts to float32
    format: int = CARD_FORMAT

    @property
    def ndim(self) -> int:
        return int(self.method_config.get("ndim", 2))

    @property
    def in_channels(self) -> int:
        return int(self.method_config.get("in_channels", 1))

    def test_ap50(self) -> dict[str, float | None]:
        """Test-split AP@0.5 by dataset (several for a model trained on several; None when
        not measured)."""
        by_data = self.metrics.get("test_by_data") or {
            self.training.get("data", ""): self.metrics.get("test", {})
        }
        if not isinstance(by_data, dict):
            return {self.training.get("data", ""): None}

        def ap(m):
            value = m.get("ap@0.50") if isinstance(m, dict) else None
            return float(value) if isinstance(value, int | float) else None

        return {name: ap(m) for name, m in by_data.items()}

    def to_json(self) -> str:
        """The card as strict JSON: a NaN or infinite number (a validation that measured
        nothing) is written as null, never as a bare ``NaN`` that JSON readers refuse."""
        return json.dumps(_finite(asdict(self)), indent=2, sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "card") -> ModelCard:
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: a model card must be a JSON object")
        missing = [k for k in ("name", "method", "method_config", "backend") if k not in data]
        if missing:
            raise CheckpointError(f"{source}: not a napari-instseg model card (missing {missing})")
        hints = typing.get_type_hints(cls)
        for key, value in data.items():
            if key in hints and not _fits(value, hints[key]):
                raise CheckpointError(
                    f"{source}: {key} = {value!r} is not a {_type_text(hints[key])}"
                )
        if data.get("format", CARD_FORMAT) > CARD_FORMAT:
            raise CheckpointError(
                f"{source}: card format {data['format']} is newer than this version supports"
            )
        return cls(**{k: v for k, v in data.items() if k in hints})

    def check_input(self, image_cf: np.ndarray) -> None:
        """Refuse a channel-first image whose channels or dimensions do not fit this model."""
        channels, spatial = image_cf.shape[0], image_cf.ndim - 1
        if spatial != self.ndim:
            raise CheckpointError(
                f"model {self.name!r} is {self.ndim}D but the image has {spatial} spatial axes"
            )
        if channels != self.in_channels:
            raise CheckpointError(
                f"model {self.name!r} expects {self.in_channels} channel(s), "
                f"the image has {channels}"
            )


def _fits(value: Any, tp: Any) -> bool:
    """Whether a JSON value has a card field's declared type (``Any`` and containers' items
    are not looked into, except numbers in lists)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _type_text(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is list:
        return f"list of {_type_text(typing.get_args(tp)[0])}s"
    words = {str: "string", int: "whole number", float: "number", dict: "JSON object"}
    return words.get(origin or tp, getattr(tp, "__name__", str(tp)))


def current_versions() -> dict[str, str]:
    """Versions of the packages that produced a checkpoint."""
    import torch

    from .. import __version__

    return {
        "napari_instseg": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _flatten_tensors(tree: Any, prefix: str, tensors: dict):
    """Split a nested state (dicts, lists, tensors, numbers) into tensors and a JSON skeleton."""
    import torch

    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        return {
            "__dict__": [
                [k, _flatten_tensors(v, f"{prefix}.{k}", tensors)] for k, v in tree.items()
            ]
        }
    if isinstance(tree, list | tuple):
        return [_flatten_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(tree)]
    if tree is None or isinstance(tree, bool | int | float | str):
        return tree
    raise CheckpointError(f"cannot store a {type(tree).__name__} at {prefix} without pickling")


def _unflatten_tensors(skeleton: Any, tensors: dict) -> Any:
    if isinstance(skeleton, dict) and "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {k: _unflatten_tensors(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [_unflatten_tensors(v, tensors) for v in skeleton]
    return skeleton


def refuse_pickle(path: Path) -> None:
    """Raise a clear error for pickles and torch.save archives before anything reads them."""
    if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin"):
        raise CheckpointError(
            f"{path.name} looks like a pickled checkpoint; napari-instseg loads only "
            "safetensors weights with a JSON model card and never unpickles (pickles can run code)"
        )
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file opens with its header's length (8 bytes, little-endian) and then the
    # JSON header itself; that length's first byte may well be 0x80, pickle's first byte.
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1:
        return
    if head.startswith(_PICKLE_MAGIC[0]) or head.startswith(_PICKLE_MAGIC[1]):
        raise CheckpointError(
            f"{path.name} is a pickle or torch.save archive, not safetensors; refusing to load it"
        )


def save_state(path: str | Path, state: dict[str, Any], *, metadata: dict | None = None) -> Path:
    """Write a nested state (model or optimizer) as safetensors + JSON skeleton, atomically."""
    from safetensors.torch import save

    path = Path(path)
    tensors: dict = {}
    skeleton = _flatten_tensors(state, "s", tensors)
    header = {"skeleton": json.dumps(skeleton), **{k: str(v) for k, v in (metadata or {}).items()}}
    _atomic_write_bytes(path, save(tensors, metadata=header))
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (or plain safetensors weights)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint: {path}")
    refuse_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path.name} is not a readable safetensors file: {err}") from err
    if "skeleton" in meta:
        return _unflatten_tensors(json.loads(meta["skeleton"]), tensors)
    return tensors


def save_model(
    directory: str | Path, name: str, net, card: ModelCard, *, half: bool = False
) -> Path:
    """Write ``name.safetensors`` and ``name.json`` into ``directory``; return the card path.

    ``half`` stores floating-point tensors as float16 (half the file size); the card says so,
    and :func:`load_model` casts them back into the float32 network.

    The weights are written first, then the card with the weights' checksum, each atomically,
    so a crash never leaves a card that points at half-written weights.
    """
    from dataclasses import replace

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}.safetensors"
    from safetensors.torch import save

    def stored(v):
        v = v.detach().cpu().contiguous()
        return v.half() if half and v.is_floating_point() else v

    _atomic_write_bytes(weights, save({k: stored(v) for k, v in net.state_dict().items()}))
    card = replace(
        card,
        name=card.name or name,
        versions=card.versions or current_versions(),
        created=card.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        weights_sha256=sha256_file(weights),
        weights_dtype="float16" if half else "float32",
    )
    card_path = directory / f"{name}.json"
    _atomic_write_bytes(card_path, card.to_json().encode())
    return card_path


def read_card(path: str | Path) -> ModelCard:
    """Read and check a model card (``.json``); the weights are not touched."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such model card: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path.name} is not a valid JSON model card: {err}") from err
    return ModelCard.from_dict(data, source=path.name)


def resolve_model_files(path: str | Path) -> tuple[Path, Path]:
    """(card, weights) for a path given as either file or as the common stem."""
    path = Path(path)
    if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin") and path.exists():
        refuse_pickle(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    # Append rather than with_suffix: a stem like "nuclei-v0.1" has a suffix of its own.
    card, weights = stem.with_name(f"{stem.name}.json"), stem.with_name(f"{stem.name}.safetensors")
    if not card.exists():
        raise CheckpointError(f"model card {card} not found")
    if not weights.exists():
        raise CheckpointError(f"weights {weights} not found next to the card")
    return card, weights


def load_weights(net, source, *, what: str = "", hint: str = "") -> None:
    """Load weights into ``net``: a safetensors file (:func:`load_state`) or a state dict.

    Weights that do not fit the network (another method, depth, width or channel count,
    as when resuming a run folder with other settings) raise :class:`CheckpointError`
    with one line: ``what`` they are (default: the file), the first mismatch, and ``hint``
    (what to do).
    """
    is_file = isinstance(source, str | Path)
    state = load_state(source) if is_file else source
    name = what or (str(source) if is_file else "the weights")
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [
        f"{k}: saved {tuple(state[k].shape)}, needed {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = [
        *([f"{len(missing)} tensors missing (first: {missing[0]})"] if missing else []),
        *([f"{len(extra)} unknown tensors (first: {extra[0]})"] if extra else []),
        *([f"{len(shapes)} tensors of another shape (first: {shapes[0]})"] if shapes else []),
    ]
    if not problems:
        try:
            net.load_state_dict(state, strict=True)
            return
        except RuntimeError as err:  # what the checks above do not see (dtypes, ...)
            problems = [str(err).splitlines()[0]]
    raise CheckpointError(
        f"{name}: the weights do not fit this network ({'; '.join(problems)})"
        + (f"; {hint}" if hint else "")
    )


def load_model(path: str | Path, *, verify_checksum: bool = True):
    """Load a model (card + network in eval mode) from its card, weights or common stem.

    Returns
    -------
    card : ModelCard
    net : torch.nn.Module
    """
    from .methods import get_method

    card_path, weights = resolve_model_files(path)
    card = read_card(card_path)
    refuse_pickle(weights)
    if verify_checksum and card.weights_sha256 and sha256_file(weights) != card.weights_sha256:
        raise CheckpointError(
            f"{weights.name} does not match the checksum on its card (corrupt or replaced file)"
        )
    try:
        method = get_method(card.method)
    except ValueError as err:
        raise CheckpointError(f"{card_path.name}: {err}") from err
    from .configs import config_from_dict

    try:
        cfg = config_from_dict(method.config_type, card.method_config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{card_path.name}: bad method_config: {err}") from err
    from .assembly import get_backend

    try:  # the card's knobs against the back-end's declared ranges, naming the card
        backend = get_backend(card.backend or method.default_backend)
        config_from_dict(backend.config_type, dict(card.backend_config), strict=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{card_path.name}: bad backend_config: {err}") from err
    net = method.build_net(cfg)
    state = load_state(weights)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(
            f"{weights.name} does not fit the {card.method} network on its card: {first}"
        ) from err
    net.eval()
    return card, net
