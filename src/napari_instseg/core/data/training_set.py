"""What a training from scratch learns from: folders in the shared layout mixed into one set.

The rules, in one place for the CLI, scripts and recipes:

* every folder contributes equally: a smaller one is repeated (whole copies) up to the size
  of the largest, so a 30-image set is not drowned by a 600-image one;
* validation takes the ``val_split`` images of every folder once, none repeated;
* images are normalised per image (percentiles) and brought to one channel as segmenting does
  (:func:`~napari_instseg.core.appearance.to_model_input`);
* sparse training (``sparse < 1``) keeps that share of each training image's objects, drawn
  with the run's seed, so a resumed run sees the same annotation;
* the dense masks, once per image, are kept aside: a method fits its configuration to them
  and the model card's typical object size is measured on them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..arrays import InputError
from .datasets import Sample, load_folder
from .normalise import normalise_percentile
from .sparse import sparsify_instances

#: The modality of training images when none is given: the look ``appearance="auto"`` maps
#: stained and brightfield images into, and the one most models here are trained on.
DEFAULT_MODALITY = "fluorescence"


@dataclass(frozen=True)
class TrainingSet:
    """Training and validation samples, and the dense training masks once per image."""

    train: list[Sample]
    val: list[Sample]
    masks: list[np.ndarray]
    folders: tuple[Path, ...]

    @property
    def data_name(self) -> str:
        """The folders' names joined by ``+``, as model cards record the training data."""
        return "+".join(folder.name for folder in self.folders)

    def object_size(self) -> float | None:
        """The median object diameter of the training masks (None when they hold none)."""
        from ..scale import median_diameter

        return median_diameter(self.masks)


def load_training_set(
    folders,
    *,
    split: str = "train",
    val_split: str | None = "val",
    appearance: str = "as-is",
    modality: str = "",
    kinds: list[str] | None = None,
    sparse: float = 1.0,
    sparse_background: str = "none",
    seed: int = 0,
) -> TrainingSet:
    """Read and mix the training folders by the rules of this module's docstring.

    Parameters
    ----------
    folders : list of path
        Folders with ``images/``, ``masks/`` and ``metadata.csv``.
    split, val_split : str
        The ``metadata.csv`` splits to train and to validate on; ``val_split`` '' or None
        for no validation.
    appearance, modality : str
        How images become one channel: ``"as-is"`` (colour to grey) or ``"auto"`` (stained and
        brightfield images mapped into ``modality``'s look, :data:`DEFAULT_MODALITY` if '').
    kinds : list of str, optional
        Keep only images of these ``kind`` values of ``metadata.csv``.
    sparse : float
        Share of each training image's objects kept, in (0, 1]; the rest become unknown.
    sparse_background : str
        With ``sparse < 1``: background counted as known, ``"none"``, ``"all"`` or ``"near"``.
    seed : int
        Seed of the sparse draw.
    """
    folders = tuple(Path(folder) for folder in folders)
    if not folders:
        raise InputError("no training data: give at least one folder")
    if not 0.0 < sparse <= 1.0:
        raise InputError(f"the share of objects kept (sparse) must be in (0, 1], not {sparse}")
    looks = {
        "appearance": appearance,
        "trained_on": modality or DEFAULT_MODALITY,
        "kinds": kinds,
        "normalise": normalise_percentile,
    }
    per_folder = [load_folder(folder, split=split, **looks) for folder in folders]
    most = max(len(samples) for samples in per_folder)
    train = [s for samples in per_folder for s in samples * (most // len(samples))]
    val = (
        [s for folder in folders for s in load_folder(folder, split=val_split, **looks)]
        if val_split
        else []
    )
    if sparse < 1.0:
        rng = np.random.default_rng(seed)
        sparse_train = []
        for sample in train:
            labels, known = sparsify_instances(
                sample.labels, sparse, rng=rng, background=sparse_background
            )
            sparse_train.append(replace(sample, labels=labels, known=known))
        train = sparse_train
    masks = [s.labels for samples in per_folder for s in samples]
    return TrainingSet(train=train, val=val, masks=masks, folders=folders)
