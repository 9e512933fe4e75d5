"""How tight a SPOCO embedding is, and what consistency clustering makes of it.

On the DSB val split (dense labels) a SPOCO model's f embedding is measured against the
method's margins (``delta_var`` 0.5, ``2 delta_dist`` 4.0):

- spread: per ground-truth nucleus, the mean distance of its pixels to the nucleus's mean
  embedding (median and mean over nuclei), and the share of pixels within ``delta_var``;
- touching pairs: the distance between the mean embeddings of two face-adjacent nuclei
  (median over pairs), and the share of pairs at least ``2 delta_dist`` apart;
- the same for g's embedding of the perturbed view (``pixel_embedding_g``), and the median
  distance between f and g at the same pixel.

Then AP@0.5 over the val images (mean of per-image DSB AP) for the mean-shift back-end with
the card's knobs and for consistency clustering with several g's and knobs:

- ``g shipped``: the momentum twin as saved, on the fixed perturbed view (what ships);
- ``g := f``: g's weights replaced by f's (the limit of a converged average once f stops
  changing), same perturbed view;
- ``g = f, no view change``: ``pixel_embedding_g`` is f's own embedding (what is left is the
  back-end's own rule);
- ``g shipped, clean view``: the shipped g on the unperturbed image (the view's share).

    python benchmarks/spoco_embedding.py [--model spoco-nuclei] [--limit 0]
        [--iou 0.6,0.3,0] [--bandwidth 0.5] [--cache /tmp/spoco/cache] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import numpy as np
import torch

from napari_instseg.core.arrays import adjacent_pairs
from napari_instseg.core.data import load_folder, normalise_percentile
from napari_instseg.core.evaluation import predict_samples, score_predictions
from napari_instseg.core.jobs import run
from napari_instseg.core.nets import momentum
from napari_instseg.core.pipeline import load_model
from napari_instseg.core.predict import PredictConfig, Prediction

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018_fluo"


def embedding_stats(emb: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-nucleus spread (mean distance to its mean), pixels' distances to their own mean,
    and the mean-to-mean distance of every touching pair of nuclei."""
    ids = labels.ravel()
    inside = ids > 0
    if not inside.any():
        return {"spread": np.zeros(0), "pixel": np.zeros(0), "touching": np.zeros(0)}
    lab = ids[inside].astype(np.int64)
    e = emb.reshape(emb.shape[0], -1)[:, inside]
    n = int(lab.max()) + 1
    counts = np.bincount(lab, minlength=n)
    means = np.stack([np.bincount(lab, weights=row, minlength=n) for row in e])
    means = means / np.maximum(counts, 1)
    d = np.linalg.norm(e - means[:, lab], axis=0)
    spread = np.bincount(lab, weights=d, minlength=n)[counts > 0] / counts[counts > 0]
    a, b, _ = adjacent_pairs(labels)
    touching = np.linalg.norm(means[:, a] - means[:, b], axis=0) if a.size else np.zeros(0)
    return {"spread": spread, "pixel": d, "touching": touching}


def summarise_stats(rows, delta_var, delta_dist) -> str:
    spread = np.concatenate([r["spread"] for r in rows])
    pixel = np.concatenate([r["pixel"] for r in rows])
    touching = np.concatenate([r["touching"] for r in rows])
    return (
        f"spread median {np.median(spread):.3f} mean {spread.mean():.3f}, "
        f"pixels within delta_var {np.mean(pixel <= delta_var):.3f}; "
        f"touching pairs {touching.size}: median distance {np.median(touching):.3f}, "
        f"share >= 2*delta_dist {np.mean(touching >= 2 * delta_dist):.3f}, "
        f"share < 1 {np.mean(touching < 1.0):.3f}"
    )


def with_g_equal_f(model):
    """A copy of the model whose g has f's weights and normalisation buffers."""
    twin = copy.deepcopy(model)
    twin.net.g.load_state_dict(twin.net.f.state_dict())
    return twin


def predictions(model, samples, tag: str, cache: Path | None, view=None):
    """Predictions of ``samples`` (cached as .npz under ``cache`` when given); ``view``
    replaces the fixed evaluation view of g (contrast, brightness, blur sigma)."""
    path = cache / f"{model.card.name}-{len(samples)}-{tag}.npz" if cache else None
    if path is not None and path.exists():
        data = np.load(path)
        out = []
        for i, s in enumerate(samples):
            raw = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{i}/")}
            out.append(Prediction(raw, tuple(s.image.shape[1:]), model.card.name, "spoco"))
        return out
    saved = momentum.EVAL_VIEW
    if view is not None:
        momentum.EVAL_VIEW = view
    try:
        preds = run(predict_samples(model, samples, config=PredictConfig(tile_size=512, halo=32)))
    finally:
        momentum.EVAL_VIEW = saved
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"{i}/{k}": v for i, p in enumerate(preds) for k, v in p.raw.items()})
    return preds


def swap_g(preds, source):
    """``preds`` with ``embedding_g`` taken from ``source`` (``None``: f's own embedding)."""
    out = []
    for i, p in enumerate(preds):
        raw = dict(p.raw)
        raw["embedding_g"] = raw["embedding"] if source is None else source[i].raw["embedding_g"]
        out.append(Prediction(raw, p.image_shape, p.model, p.method, p.info))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="spoco-nuclei")
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    p.add_argument("--iou", default="0.6,0.3,0", help="iou_threshold values for consistency")
    p.add_argument(
        "--bandwidth", default="", help="consistency bandwidths to try besides the card's"
    )
    p.add_argument("--cache", type=Path, help="folder for cached predictions")
    p.add_argument("--no-variants", action="store_true", help="embedding statistics only")
    p.add_argument(
        "--variants",
        default="g shipped,g := f,g = f,clean view",
        help="which g's to score (comma-separated, of the four in the docstring)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.model)
    cfg = model.config
    norm = model.card.normalisation

    def normalise(x):
        return normalise_percentile(x, low=norm["low"], high=norm["high"])

    samples = load_folder(DATA, split=args.split, normalise=normalise)
    if args.limit:
        samples = samples[: args.limit]
    print(
        f"model {model.card.name} ({args.model}); {len(samples)} {args.split} images; "
        f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}"
    )
    t0 = time.perf_counter()
    shipped = predictions(model, samples, "shipped", args.cache)
    print(f"predicted in {time.perf_counter() - t0:.0f} s")
    rows_f = [
        embedding_stats(np.asarray(pr.raw["embedding"]), s.labels)
        for pr, s in zip(shipped, samples, strict=True)
    ]
    rows_g = [
        embedding_stats(np.asarray(pr.raw["embedding_g"]), s.labels)
        for pr, s in zip(shipped, samples, strict=True)
    ]
    fg_gap = np.concatenate(
        [
            np.linalg.norm(pr.raw["embedding"] - pr.raw["embedding_g"], axis=0)[s.labels > 0]
            for pr, s in zip(shipped, samples, strict=True)
        ]
    )
    print(f"f: {summarise_stats(rows_f, cfg.delta_var, cfg.delta_dist)}")
    print(f"g: {summarise_stats(rows_g, cfg.delta_var, cfg.delta_dist)}")
    print(f"|f - g| at nucleus pixels: median {np.median(fg_gap):.3f}")
    if args.no_variants:
        return

    wanted = {v.strip() for v in args.variants.split(",")}
    variants = {}
    if "g shipped" in wanted:
        variants["g shipped"] = shipped
    if "g := f" in wanted:
        g_is_f = predictions(with_g_equal_f(model), samples, "g_is_f", args.cache)
        gap = np.concatenate(
            [
                np.linalg.norm(pr.raw["embedding"] - pr.raw["embedding_g"], axis=0)[s.labels > 0]
                for pr, s in zip(g_is_f, samples, strict=True)
            ]
        )
        print(
            f"|f - g| at nucleus pixels with g := f (perturbed view): median {np.median(gap):.3f}"
        )
        variants["g := f"] = swap_g(shipped, g_is_f)
    if "g = f" in wanted:
        variants["g = f, no view change"] = swap_g(shipped, None)
    if "clean view" in wanted:
        clean = predictions(model, samples, "clean_view", args.cache, view=(1.0, 0.0, 0.0))
        variants["g shipped, clean view"] = swap_g(shipped, clean)
    ms = model.backend_config("meanshift")
    base = {"fg_threshold": ms.fg_threshold, "merge_distance": ms.merge_distance}
    bandwidths = [ms.bandwidth] + [float(b) for b in args.bandwidth.split(",") if b]
    ious = [float(v) for v in args.iou.split(",") if v]

    def ap(preds, backend, knobs):
        _, summary = score_predictions(
            model, samples, preds, backend=backend, knobs=knobs, thresholds=(0.5,)
        )
        return summary["ap@0.50"]

    print(f"\nAP@0.5 on {len(samples)} {args.split} images")
    print(f"{'back-end':12} {'g':24} {'bandwidth':>9} {'iou_thr':>7} {'AP@0.5':>7}")
    for bw in bandwidths:
        knobs = {**base, "bandwidth": bw}
        print(
            f"{'meanshift':12} {'-':24} {bw:9.2f} {'-':>7} {ap(shipped, 'meanshift', knobs):7.3f}"
        )
        for name, preds in variants.items():
            for thr in ious:
                value = ap(preds, "consistency", {**knobs, "iou_threshold": thr})
                print(f"{'consistency':12} {name:24} {bw:9.2f} {thr:7.2f} {value:7.3f}")


if __name__ == "__main__":
    main()
