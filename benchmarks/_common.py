"""Helpers shared by the assembly benchmarks: real ground truth tiled to any size, medians,
and the one-off numba compile time measured in a fresh process."""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from napari_instseg.core.arrays import LABEL_DTYPE

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018_fluo"
#: Side of the DSB test masks that are tiled (the most common test-image size).
TILE = 256


def _tile_names() -> list[str]:
    """The DSB test images of 256², sorted by name."""
    with open(DATA / "metadata.csv", newline="") as f:  # CRLF line endings
        rows = list(csv.DictReader(f))
    return sorted(
        r["name"]
        for r in rows
        if r["split"] == "test" and int(r["height"]) == TILE and int(r["width"]) == TILE
    )


def _tiled(folder: str, n_tiles: int, prepare) -> np.ndarray:
    """``n_tiles`` x ``n_tiles`` tiles of the 256² test files in ``folder``, used in turn,
    each passed through ``prepare(array, tile_index)``."""
    names = _tile_names()
    arrays = [tifffile.imread(DATA / folder / f"{n}.tif") for n in names]
    grid = [
        [prepare(arrays[(i * n_tiles + j) % len(arrays)], i * n_tiles + j) for j in range(n_tiles)]
        for i in range(n_tiles)
    ]
    return np.block(grid)


def tiled_truth(n_tiles: int) -> tuple[np.ndarray, int]:
    """``n_tiles`` x ``n_tiles`` DSB test masks of 256², each object with its own id, and the
    number of distinct masks used."""
    offsets = [0]

    def own_ids(mask, _):
        mask = mask.astype(LABEL_DTYPE)
        out = np.where(mask > 0, mask + offsets[0], 0).astype(LABEL_DTYPE)
        offsets[0] += int(mask.max())
        return out

    return _tiled("masks", n_tiles, own_ids), len(_tile_names())


def tiled_images(n_tiles: int) -> np.ndarray:
    """The images of :func:`tiled_truth`, float32, each tile scaled on its own from its 1st
    and 99.8th percentiles (tiles of different brightness side by side)."""

    def scaled(image, _):
        image = image.astype(np.float32)
        if image.ndim == 3:  # RGB(A) stored
            image = image[..., :3].mean(-1)
        lo, hi = np.percentile(image, (1, 99.8))
        return (image - lo) / max(hi - lo, 1e-6)

    return _tiled("images", n_tiles, scaled).astype(np.float32)


def stats(times):
    """Median, min and max in milliseconds of times in seconds."""
    ms = [1000 * t for t in times]
    return statistics.median(ms), min(ms), max(ms)


def compile_ms(snippet: str) -> tuple[str, str]:
    """Run ``snippet`` (which prints its import and first-call times) in a fresh process
    with an empty numba cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out = subprocess.run(
            [sys.executable, "-c", snippet], env=env, capture_output=True, text=True
        )
    if out.returncode:
        return "failed", out.stderr.strip().splitlines()[-1]
    imp, first = out.stdout.split()
    return imp, first
