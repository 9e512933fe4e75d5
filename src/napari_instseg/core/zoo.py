"""The shipped pretrained models and user model folders.

Shipped models live inside the package (``napari_instseg/zoo/NAME.{json,safetensors}``), so they
work offline and from an installed wheel. Users add folders with the environment variable
``NAPARI_INSTSEG_MODEL_DIRS`` (separated by ``os.pathsep``); tuned copies and fine-tunes made in
napari go to :func:`user_model_dir`.
"""

from __future__ import annotations

import logging
import os
from importlib.resources import files
from pathlib import Path

from .checkpoint import CheckpointError, ModelCard, load_model, read_card, resolve_model_files

logger = logging.getLogger(__name__)


def zoo_dir() -> Path:
    """Folder of the shipped models."""
    return Path(str(files("napari_instseg") / "zoo"))


def user_model_dir() -> Path:
    """Where the user's own models go (tuned copies, fine-tunes):
    ``NAPARI_INSTSEG_USER_MODELS`` or ``~/.napari-instseg/models``."""
    env = os.environ.get("NAPARI_INSTSEG_USER_MODELS")
    return Path(env) if env else Path.home() / ".napari-instseg" / "models"


def model_dirs(extra: list[str | Path] | None = None) -> list[Path]:
    """Folders searched for models: the shipped zoo, the user folder, then extra folders."""
    dirs = [zoo_dir(), user_model_dir()]
    env = os.environ.get("NAPARI_INSTSEG_MODEL_DIRS", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path(p) for p in extra or []]
    return dirs


def list_models(extra_dirs: list[str | Path] | None = None) -> list[tuple[ModelCard, Path]]:
    """Every readable model card (with its path) in the model folders, by name."""
    found: dict[str, tuple[ModelCard, Path]] = {}
    for d in model_dirs(extra_dirs):
        if not d.is_dir():
            continue
        for card_path in sorted(d.glob("*.json")):
            if not card_path.with_suffix(".safetensors").exists():
                continue
            try:
                card = read_card(card_path)
            except (CheckpointError, OSError) as err:
                # One broken card must not hide every other model: skip it, and say so.
                logger.warning("skipped model card %s: %s", card_path, err)
                continue
            found.setdefault(card.name, (card, card_path))
    return sorted(found.values(), key=lambda item: item[0].name)


def find_model_path(name_or_path: str | Path, extra_dirs: list[str | Path] | None = None) -> Path:
    """The card/weights/stem path of a model given by name or by path (not checked further)."""
    path = Path(name_or_path)
    is_stem = Path(f"{path}.json").exists()
    if path.suffix in (".json", ".safetensors", ".pt", ".pth", ".ckpt") or path.exists() or is_stem:
        return path
    for card, card_path in list_models(extra_dirs):
        if card.name == str(name_or_path):
            return card_path
    names = [c.name for c, _ in list_models(extra_dirs)]
    raise CheckpointError(f"no model called {name_or_path!r}; available: {names}")


def find_model(name_or_path: str | Path, extra_dirs: list[str | Path] | None = None):
    """Load ``(card, net)`` by model name or by path to its card/weights/stem."""
    return load_model(find_model_path(name_or_path, extra_dirs))


def find_card(name_or_path: str | Path, extra_dirs: list[str | Path] | None = None) -> ModelCard:
    """The card of a model given by name or path, without loading its weights."""
    card_path, _ = resolve_model_files(find_model_path(name_or_path, extra_dirs))
    return read_card(card_path)
