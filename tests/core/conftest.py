"""Shared helpers for the core tests: tiny synthetic data and a tiny saved model.

Torch is limited to one thread: the nets here are tiny (width 4-8), so extra threads only add
overhead, and the suite must stay quick on a busy 2-core machine.
"""

from __future__ import annotations

import numpy as np
import pytest

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency of the core
    pass


def make_disks(
    shape: tuple[int, int] = (64, 64),
    *,
    rng: np.random.Generator,
    cell: int = 21,
    radius: tuple[int, int] = (4, 7),
) -> np.ndarray:
    """Labels of random disks, one per grid cell, never touching (ids 1..N)."""
    labels = np.zeros(shape, np.uint32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    next_id = 1
    for cy in range(cell // 2, shape[0] - cell // 2, cell):
        for cx in range(cell // 2, shape[1] - cell // 2, cell):
            if rng.random() < 0.2:
                continue
            r = int(rng.integers(radius[0], radius[1] + 1))
            jitter = cell // 2 - r - 1
            y = cy + (int(rng.integers(-jitter, jitter + 1)) if jitter > 0 else 0)
            x = cx + (int(rng.integers(-jitter, jitter + 1)) if jitter > 0 else 0)
            labels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = next_id
            next_id += 1
    return labels


def disks_sample(name: str, seed: int, shape=(64, 64), noise: float = 0.1):
    """A ``Sample`` of disks: image = foreground + gaussian noise, percentile-normalised."""
    from napari_instseg.core.data import Sample, normalise_percentile

    rng = np.random.default_rng(seed)
    labels = make_disks(shape, rng=rng)
    image = (labels > 0).astype(np.float32) + noise * rng.standard_normal(shape).astype(np.float32)
    image = normalise_percentile(image[None])
    return Sample(name, image, labels, np.ones(shape, bool))


@pytest.fixture
def disks():
    """Factory: ``disks(seed, shape)`` -> labels of non-touching disks."""

    def factory(seed: int = 0, shape=(64, 64)):
        return make_disks(shape, rng=np.random.default_rng(seed))

    return factory


@pytest.fixture
def disk_samples():
    """Factory: ``disk_samples(n, seed)`` -> list of ``Sample`` of noisy disks."""

    def factory(n: int = 4, seed: int = 0, shape=(64, 64)):
        return [disks_sample(f"img{i}", seed + i, shape) for i in range(n)]

    return factory


@pytest.fixture
def tiny_model(tmp_path):
    """A freshly initialised tiny 2D ``threeclass`` model saved in ``tmp_path/models``.

    Returns ``(card_path, net)``; the saved model is named ``tiny``.
    """
    import torch

    from napari_instseg.core.checkpoint import ModelCard, save_model
    from napari_instseg.core.configs import config_to_dict
    from napari_instseg.core.methods import get_method

    method = get_method("threeclass")
    cfg = method.config_type(ndim=2, in_channels=1, depth=2, width=4)
    torch.manual_seed(0)
    net = method.build_net(cfg).eval()
    card = ModelCard(
        name="tiny",
        method="threeclass",
        method_config=config_to_dict(cfg),
        backend="watershed",
        backend_config={"min_size": 3},
    )
    card_path = save_model(tmp_path / "models", "tiny", net, card)
    return card_path, net
