"""Time prediction and post-processing of every shipped model on a 512² and a 2048² image.

The 512² image is the bundled DSB nuclei sample; the 2048² one tiles it 4x4 (mirrored so
objects continue across the joins). Medians over repeats, with the ratio of 2048² to 512²
time per pixel (1.0 means time grows linearly with the image area).

    python benchmarks/speed.py [--models NAME ...] [--repeats 3] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from napari_instseg.core.jobs import run
from napari_instseg.core.pipeline import assemble, load_model, predict_image
from napari_instseg.core.predict import PredictConfig, select_device
from napari_instseg.core.samples import load_sample
from napari_instseg.core.zoo import list_models


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_model(model, image, pconf, repeats: int):
    """Median prediction and assembly seconds, and the labels, for one image."""
    holder = {}

    def do_predict():
        holder["p"] = run(predict_image(model, image, config=pconf))

    t_pred = median_time(do_predict, repeats)
    labels = assemble(model, holder["p"])
    t_asm = median_time(lambda: assemble(model, holder["p"]), repeats + 2)
    return t_pred, t_asm, labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--tile-size", type=int, default=512)
    args = p.parse_args()

    image512, _ = load_sample("nuclei2d_dsb_stardist")
    tile = np.concatenate([image512, image512[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    image2048 = np.tile(tile, (2, 2))
    device = select_device(args.device)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}, device {device}, tile {args.tile_size}"
    )
    header = (
        f"{'model':24} {'size':>9} {'predict s':>10} {'assemble s':>11} {'objects':>8} "
        f"{'predict/px ratio':>17} {'assemble/px ratio':>18}"
    )
    print(header)
    print("-" * len(header))
    pconf = PredictConfig(tile_size=args.tile_size, device=args.device)
    for card in [c for c, _ in list_models() if not args.models or c.name in args.models]:
        model = load_model(card.name)
        run(predict_image(model, image512[:128, :128], config=pconf))  # warm-up
        base = None
        for image in (image512, image2048):
            reps = args.repeats if image.size <= 512**2 else max(1, args.repeats - 1)
            t_pred, t_asm, labels = time_model(model, image, pconf, reps)
            per_px = (t_pred / image.size, t_asm / image.size)
            base = base or per_px
            print(
                f"{card.name:24} {image.shape[0]:>4}x{image.shape[1]:<4} {t_pred:10.2f} "
                f"{t_asm:11.3f} {int(labels.max()):8d} {per_px[0] / base[0]:17.2f} "
                f"{per_px[1] / base[1]:18.2f}"
            )


if __name__ == "__main__":
    main()
