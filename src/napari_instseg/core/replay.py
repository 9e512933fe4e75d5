"""Replay sets: a few fully annotated crops of the data a shipped model learnt from.

Fine-tuning from a few objects of a new kind of image moves the whole network towards them
and away from what it knew: on the fluorescence it was trained on, ``embedseg-nuclei`` fell
from AP@0.5 0.86 to 0.52 after 20 stained objects (docs/transfer.md). Mixing crops of the
parent's own training data, every object annotated, into each fine-tuning batch ("rehearsal"
or experience replay) keeps the network answering for both, and the dense crops keep the
offsets, bandwidths and seed maps calibrated where sparse crops only say something near the
painted objects.

A replay set is one safetensors file in the package (``zoo/replay/<data>.safetensors``)
named after the data set in the cards' ``training["data"]``: ``images`` (N, C, S, S) float16,
normalised as the models saw them (percentile 1-99.8 over the whole image, then cropped),
and ``labels`` (N, S, S) int16 instance ids per crop. ``recipes/replay_set.py`` writes it
from the train split; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.datasets import Sample


def replay_dir() -> Path:
    from .zoo import zoo_dir

    return zoo_dir() / "replay"


def replay_path(data: str) -> Path:
    return replay_dir() / f"{data}.safetensors"


def make_replay_crops(
    images: list[np.ndarray], labels: list[np.ndarray], *, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One ``size`` crop per image, centred near a random object pixel (dense labels).

    ``images`` are normalised, channel-first; smaller images are padded (0 image, 0 labels:
    padding reads as background, as the network sees an image's edge). Label ids are
    renumbered 1..n per crop.
    """
    from skimage.segmentation import relabel_sequential

    out_x, out_y = [], []
    for x, y in zip(images, labels, strict=True):
        pad = [(0, max(0, size - n)) for n in y.shape]
        x = np.pad(x, [(0, 0), *pad])
        y = np.pad(y, pad)
        fg = np.flatnonzero(y)
        if fg.size:
            centre = np.unravel_index(fg[rng.integers(fg.size)], y.shape)
        else:
            centre = tuple(int(rng.integers(n)) for n in y.shape)
        starts = [
            int(np.clip(c - size // 2, 0, n - size)) for c, n in zip(centre, y.shape, strict=True)
        ]
        window = tuple(slice(s, s + size) for s in starts)
        out_x.append(x[(slice(None), *window)].astype(np.float16))
        out_y.append(relabel_sequential(y[window].astype(np.int32))[0].astype(np.int16))
    return np.stack(out_x), np.stack(out_y)


def save_replay_set(path: str | Path, images: np.ndarray, labels: np.ndarray, **meta) -> Path:
    """Write a replay set (staged, then moved into place)."""
    import torch

    from .checkpoint import save_state

    state = {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_state(path, state, metadata={k: str(v) for k, v in meta.items()})


def load_replay_set(path: str | Path) -> list[Sample]:
    """The crops of a replay set as densely labelled samples (float32 images)."""
    from .checkpoint import load_state

    state = load_state(path)
    images = state["images"].float().numpy()
    labels = state["labels"].numpy().astype(np.int32)
    name = Path(path).stem
    return [
        Sample(f"{name} replay {i}", images[i], labels[i], np.ones(labels[i].shape, bool))
        for i in range(len(images))
    ]


def replay_for(card) -> list[Sample]:
    """The replay samples of the data ``card``'s model (or the model it was fine-tuned
    from) learnt from, when the package has them and they fit the network's input; else [].

    A model trained on several data sets (``"dsb2018_fluo+dsb2018_stained"``) gets the
    replay sets of those that have one."""
    training = card.training or {}
    for data in (training.get("parent_data"), training.get("data")):
        if not isinstance(data, str) or not data:
            continue
        samples = []
        for part in data.split("+"):
            path = replay_path(part.strip())
            if path.exists():
                samples.extend(load_replay_set(path))
        fits = [
            s
            for s in samples
            if s.image.shape[0] == card.in_channels and s.labels.ndim == card.ndim
        ]
        if fits:
            return fits
    return []
