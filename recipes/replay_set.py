"""Write the replay set of a data set: one dense crop from each of N train-split images.

The crops are normalised as the models trained on that data saw them (percentile 1-99.8
over the whole image) and written to src/napari_instseg/zoo/replay/<data>.safetensors, where
fine-tuning finds them by the name in a card's ``training["data"]`` (core/replay.py).

Usage (from the repository root):
    python recipes/replay_set.py ../shared/data/dsb2018_fluo [--crops 32] [--size 128] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_instseg.core.data import load_folder, normalise_percentile
from napari_instseg.core.replay import make_replay_crops, replay_path, save_replay_set


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--crops", type=int, default=32)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    samples = load_folder(args.data, split="train", normalise=normalise_percentile)
    picks = sorted(rng.choice(len(samples), size=min(args.crops, len(samples)), replace=False))
    chosen = [samples[i] for i in picks]
    images, labels = make_replay_crops(
        [s.image for s in chosen], [s.labels for s in chosen], size=args.size, rng=rng
    )
    name = args.data.resolve().name
    path = save_replay_set(
        replay_path(name),
        images,
        labels,
        data=name,
        split="train",
        images_used=",".join(s.name for s in chosen),
        recipe="recipes/replay_set.py",
        seed=args.seed,
    )
    objects = int(labels.max(axis=(1, 2)).sum())
    print(f"{path}: {len(chosen)} crops of {args.size} px, {objects} objects")


if __name__ == "__main__":
    main()
