"""How long the default fine-tune takes on one 1024² image with 20 annotated objects.

The issue's target: <= 3 minutes wall on 2 CPU cores, checks included. The image is 4 x 4
DSB fluorescence test images of 256² (``_common.tiled_images``), 20 whole nuclei annotated
off the border with the background painted within 8 px (``benchmarks/finetune.py``'s user),
one more 1024² tiled image as unannotated context (the widget's "other open images").
The fine-tune runs with the Fine-tune widget's defaults; the table splits its wall time by
stage: the parent's held-out check, training (its checkpoints' held-out checks included),
the merge-distance choice and the comparison with the parent on both images. Each model
runs ``--repeats`` times; medians.

    python benchmarks/finetune_speed.py [--models embedseg-nuclei spoco-nuclei] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from _common import tiled_images, tiled_truth
from finetune import simulated_annotation  # benchmarks/finetune.py's user

TARGET_MIN = 3.0


def timed_finetune(parent, item, context, tmp: str) -> dict[str, float]:
    """Seconds per stage of one default fine-tune."""
    from napari_instseg.core.finetune import finetune
    from napari_instseg.core.jobs import Metric, Progress, run

    stages: dict[str, float] = defaultdict(float)
    state = {"stage": "held-out check of the parent", "t": time.perf_counter()}

    def on_event(event) -> None:
        now = time.perf_counter()
        stages[state["stage"]] += now - state["t"]
        state["t"] = now
        if isinstance(event, Metric) and event.name == "heldout_objects":
            state["stage"] = "train"
        elif isinstance(event, Progress) and event.stage != "train":
            state["stage"] = event.stage

    t0 = time.perf_counter()
    run(
        finetune(
            parent,
            [item],
            name="speed",
            run_dir=Path(tmp) / "run",
            models_dir=tmp,
            context=context,
        ),
        on_event,
    )
    stages[state["stage"]] += time.perf_counter() - state["t"]
    stages["total"] = time.perf_counter() - t0
    return stages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["embedseg-nuclei", "spoco-nuclei"])
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()

    import torch

    from napari_instseg.core.finetune import AnnotatedImage, FinetuneConfig, UnannotatedImage
    from napari_instseg.core.pipeline import load_model

    truth, _ = tiled_truth(4)
    image = tiled_images(4)
    context = [UnannotatedImage("context", np.rot90(image).copy())]
    annotation, _ = simulated_annotation(truth, 20, np.random.default_rng(0))
    item = AnnotatedImage("tiled", image, annotation)
    defaults = FinetuneConfig()
    print(
        f"one {image.shape[0]}x{image.shape[1]} image, 20 objects, 1 context image; defaults: "
        f"{defaults.iterations} iterations, batch {defaults.batch_size}, "
        f"{defaults.patch_size} px, replay {defaults.replay}; torch threads "
        f"{torch.get_num_threads()}; medians of {args.repeats} run(s), seconds"
    )
    rows = []
    for name in args.models:
        parent = load_model(name)
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(timed_finetune(parent, item, context, tmp))
        keys = sorted({k for r in runs for k in r} - {"total"})
        med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in [*keys, "total"]}
        rows.append((name, med))
    stages = sorted({k for _, m in rows for k in m} - {"total"})
    head = (
        f"{'model':18} " + " ".join(f"{s[:22]:>22}" for s in stages) + f" {'total':>7} {'min':>5}"
    )
    print(head)
    print("-" * len(head))
    for name, med in rows:
        cells = " ".join(f"{med.get(s, 0.0):22.1f}" for s in stages)
        total = med["total"]
        ok = "ok" if total / 60 <= TARGET_MIN else "over"
        print(f"{name:18} {cells} {total:7.1f} {total / 60:5.2f} ({ok}: target {TARGET_MIN} min)")


if __name__ == "__main__":
    main()
