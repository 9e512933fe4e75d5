"""Two versions of our mean-shift, timed back to back on the same embedding.

The embedding is ``benchmarks/clustering.py``'s 512² one (``spoco-nuclei`` on a DSB test
crop, foreground pixels). Each repeat runs every variant once in a fresh process per version,
the versions taking turns, so that both see the same load (the machine may be shared). The
other version is a source tree, e.g. a git worktree of an earlier commit::

    git worktree add --detach /tmp/old <commit>
    python benchmarks/meanshift_versions.py --old-src /tmp/old/src [--bandwidths 1.2,2.0]
    git worktree remove /tmp/old

Variants: each version's default, ``sample_size=0`` (all points climb), and ``merge=0``
(every seed climbs to its end) where the version has it. Rows give the median wall time, its
ratio to the old default, the number of modes and the adjusted Rand index against the exact
climb of this version (``sample_size=0, merge=0``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"default": {}, "all points": {"sample_size": 0}, "no shared paths": {"merge": 0.0}}

WORKER = """
import json, sys, time
import numpy as np
from napari_instseg.core.assembly import meanshift
try:
    from napari_instseg.core.assembly import reuse
except ImportError:
    reuse = None
points = np.load(sys.argv[1])
out = {}
for bw in json.loads(sys.argv[2]):
    for name, kw in json.loads(sys.argv[3]).items():
        try:
            meanshift.mean_shift(points[:2000], bw, **kw)  # compiles, and checks the knobs
        except TypeError:
            continue  # a knob this version does not have
        if reuse is not None:
            reuse.forget()
        t0 = time.perf_counter()
        labels, modes = meanshift.mean_shift(points, bw, **kw)
        out[f"{bw} {name}"] = [time.perf_counter() - t0, len(modes)]
        np.save(sys.argv[4] + f"/{bw} {name}.npy", labels)
print(json.dumps(out))
"""


def embedding(model_name: str) -> np.ndarray:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from clustering import scenes

    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import load_model, predict_image

    model = load_model(model_name)
    _, image, _ = scenes({512})[0]
    arrays = model.method.decode(run(predict_image(model, image)).raw, model.config)
    keep = arrays["foreground"] > model.backend_config("meanshift").fg_threshold
    return np.ascontiguousarray(arrays["pixel_embedding"][:, keep].T)


def main() -> None:
    from sklearn.metrics import adjusted_rand_score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old-src", required=True, help="the other version's src folder")
    p.add_argument("--model", default="spoco-nuclei")
    p.add_argument("--bandwidths", default="1.2,2.0")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--threads",
        type=int,
        help="threads for torch, BLAS and numba in both versions (default: theirs); on a "
        "loaded machine, threads waiting for each other can dominate the time",
    )
    args = p.parse_args()
    if not (Path(args.old_src) / "napari_instseg").is_dir():
        p.error(f"{args.old_src} holds no napari_instseg package")
    bandwidths = [float(b) for b in args.bandwidths.split(",")]
    versions = {"old": str(Path(args.old_src).resolve()), "new": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/points.npy", embedding(args.model))
        times: dict = {}
        for _ in range(args.repeats):
            for version, src in versions.items():
                folder = Path(tmp) / version
                folder.mkdir(exist_ok=True)
                env = {**os.environ, "PYTHONPATH": src}
                if args.threads:
                    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
                        env[var] = str(args.threads)
                cmd = [sys.executable, "-c", WORKER, f"{tmp}/points.npy"]
                cmd += [json.dumps(bandwidths), json.dumps(VARIANTS), str(folder)]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                for key, (sec, modes) in json.loads(res.stdout.splitlines()[-1]).items():
                    times.setdefault((version, key), []).append((sec, modes))
        threads = args.threads or "default"
        load = os.getloadavg()[0]
        print(f"{os.cpu_count()} cores, threads {threads}, {args.repeats} repeats, load {load:.1f}")
        head = f"{'bandwidth':>9} {'version':7} {'variant':16} {'median ms':>9} {'x old':>6}"
        head += f" {'modes':>5} {'ARI vs exact':>12}"
        print(head)
        print("-" * len(head))
        for bw in bandwidths:
            exact = np.load(Path(tmp) / "new" / f"{bw} no shared paths.npy")
            base = statistics.median(s for s, _ in times[("old", f"{bw} default")])
            for (version, key), runs in times.items():
                if not key.startswith(f"{bw} "):
                    continue
                variant = key.split(" ", 1)[1]
                ms = statistics.median(s for s, _ in runs)
                labels = np.load(Path(tmp) / version / f"{key}.npy")
                ari = adjusted_rand_score(exact, labels)
                print(
                    f"{bw:9.2f} {version:7} {variant:16} {ms * 1000:9.0f} {base / ms:6.2f}"
                    f" {runs[0][1]:5d} {ari:12.4f}"
                )


if __name__ == "__main__":
    main()
