"""Synthetic blob images and a label-partition comparison, shared by the blockwise tests
(tests/ is on the import path: it holds the root conftest.py)."""

from __future__ import annotations

import numpy as np


def blobs(shape, n, seed=0):
    """A float32 image of ``n`` random discs (or balls) of radius 3-8 set to 1."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    img = np.zeros(shape, np.float32)
    for _ in range(n):
        c = rng.uniform(0, shape).reshape((-1,) + (1,) * len(shape))
        img[((grid - c) ** 2).sum(0) < rng.uniform(3, 8) ** 2] = 1
    return img


def same_partition(a, b):
    """Whether two label images split the same foreground into the same objects (ids aside)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))
