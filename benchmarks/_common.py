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


def tiled_truth(n_tiles: int) -> tuple[np.ndarray, int]:
    """``n_tiles`` x ``n_tiles`` DSB test masks of 256², each object with its own id, and the
    number of distinct masks used."""
    with open(DATA / "metadata.csv", newline="") as f:  # CRLF line endings
        rows = list(csv.DictReader(f))
    names = sorted(
        r["name"]
        for r in rows
        if r["split"] == "test" and int(r["height"]) == TILE and int(r["width"]) == TILE
    )
    masks = [tifffile.imread(DATA / "masks" / f"{n}.tif").astype(LABEL_DTYPE) for n in names]
    grid, offset = [], 0
    for i in range(n_tiles):
        row = []
        for j in range(n_tiles):
            mask = masks[(i * n_tiles + j) % len(masks)]
            row.append(np.where(mask > 0, mask + offset, 0).astype(LABEL_DTYPE))
            offset += int(mask.max())
        grid.append(row)
    return np.block(grid), len(masks)


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
