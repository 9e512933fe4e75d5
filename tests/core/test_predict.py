"""Tests for napari_instseg.core.predict: tiling plans and tiled inference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from napari_instseg.core.jobs import Progress, Stop, run
from napari_instseg.core.nets import UNetConfig, build_unet
from napari_instseg.core.predict import (
    PredictConfig,
    _blend_window,
    plan_tiles,
    predict_tiled,
    select_device,
)


class PixelNet(nn.Module):
    """A purely local network: each output pixel depends only on the same input pixel."""

    def __init__(self, ndim: int, in_channels: int = 2):
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        torch.manual_seed(0)
        self.a = conv(in_channels, 3, 1)
        self.b = conv(in_channels, 1, 1)

    def forward(self, x):
        return {"a": self.a(x), "b": torch.tanh(self.b(x))}


def _untiled(net, image):
    with torch.no_grad():
        out = net.eval()(torch.from_numpy(image)[None])
    return {k: v[0].numpy() for k, v in out.items()}


# ---------------------------------------------------------------------------
# plan_tiles
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "tile", "halo", "multiple"),
    [
        ((37, 53), 16, 4, 8),
        ((37, 53), 32, 8, 8),
        ((37, 53), 512, 32, 8),
        ((100,), 30, 5, 4),
        ((5, 37, 53), 16, 2, 4),
        ((7, 9), (4, 8), 1, 2),
        ((64, 64), 64, 16, 16),
        ((1, 1), 8, 2, 8),
    ],
)
def test_plan_covers_every_pixel_with_multiple_sized_tiles(shape, tile, halo, multiple):
    plan = plan_tiles(shape, tile_size=tile, halo=halo, multiple=multiple)
    assert all(t % multiple == 0 and t > 0 for t in plan.tile_shape)
    assert all(p >= s for p, s in zip(plan.padded_shape, shape, strict=True))
    covered = np.zeros(plan.padded_shape, int)
    for start in plan.starts:
        sl = tuple(slice(s, s + t) for s, t in zip(start, plan.tile_shape, strict=True))
        assert all(
            s >= 0 and s + t <= p
            for s, t, p in zip(start, plan.tile_shape, plan.padded_shape, strict=True)
        )
        covered[sl] += 1
    assert covered.min() >= 1
    # tiles never need more padding than one network multiple (or the tile) beyond the image
    for p, s, t in zip(plan.padded_shape, shape, plan.tile_shape, strict=True):
        assert p == max(s, t)


def test_plan_known_answer():
    plan = plan_tiles((40,), tile_size=16, halo=4, multiple=8)
    assert plan.tile_shape == (16,) and plan.halo == (4,)
    assert plan.starts == ((0,), (8,), (16,), (24,))
    plan = plan_tiles((20, 20), tile_size=64, halo=8, multiple=8)
    assert plan.tile_shape == (24, 24) and plan.padded_shape == (24, 24)
    assert plan.starts == ((0, 0),)


def test_plan_halo_is_limited_by_the_tile():
    plan = plan_tiles((100,), tile_size=16, halo=100, multiple=8)
    assert plan.halo == (4,)  # (16 - 8) // 2


def test_plan_interiors_overlap_so_halo_covers_seams():
    plan = plan_tiles((90, 70), tile_size=32, halo=6, multiple=8)
    h = plan.halo
    interior = np.zeros(plan.padded_shape, int)
    for start in plan.starts:
        sl = tuple(
            slice(s + (hh if s > 0 else 0), s + t - hh)
            for s, t, hh in zip(start, plan.tile_shape, h, strict=True)
        )
        interior[sl] += 1
    # every pixel except the far border band is in the trusted interior of some tile
    assert interior[: 90 - h[0], : 70 - h[1]].min() >= 1


def test_blend_window_is_positive_and_ramps_over_the_inner_half_of_the_halo():
    w = _blend_window((16, 8), (4, 0))
    assert w.shape == (16, 8) and w.min() > 0 and w.max() == 1
    np.testing.assert_array_equal(w[:, 0], w[:, 7])  # no halo along X
    np.testing.assert_allclose(w[:6, 0], [1e-3, 1e-3, 0.25, 0.75, 1, 1])
    np.testing.assert_array_equal(w[:, 0], w[::-1, 0])  # symmetric


# ---------------------------------------------------------------------------
# predict_tiled
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "tile", "halo", "batch"),
    [
        ((37, 53), 16, 4, 1),
        ((37, 53), 24, 8, 3),
        ((37, 53), 512, 32, 1),
        ((37, 53), (8, 32), 2, 2),
        ((9, 37, 21), 8, 2, 1),
        ((9, 37, 21), 16, 4, 4),
        ((3, 5, 7), 64, 8, 1),
    ],
)
def test_local_network_gives_exactly_the_untiled_result(shape, tile, halo, batch):
    image = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    net = PixelNet(len(shape))
    expected = _untiled(net, image)
    config = PredictConfig(tile_size=tile, halo=halo, device="cpu", batch_size=batch)
    got = run(predict_tiled(net, image, config=config, multiple=8 if len(shape) == 2 else 4))
    assert set(got) == {"a", "b"}
    for k in expected:
        assert got[k].dtype == np.float32 and got[k].shape == expected[k].shape
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-5)


def test_unet_tiled_agrees_with_one_big_tile_away_from_borders():
    """A depth-2 UNet sees about 8 px around a pixel: a 16 px halo gives near-exact tiles."""
    torch.manual_seed(0)
    net = build_unet(UNetConfig(ndim=2, depth=2, width=4, heads=(("out", 2),))).eval()
    image = np.random.default_rng(1).normal(size=(1, 72, 88)).astype(np.float32)
    big_config = PredictConfig(tile_size=512, device="cpu")
    big = run(predict_tiled(net, image, config=big_config, multiple=2))
    tiled_config = PredictConfig(tile_size=32, halo=16, device="cpu")
    tiled = run(predict_tiled(net, image, config=tiled_config, multiple=2))
    assert tiled["out"].shape == big["out"].shape == (2, 72, 88)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    diff = np.abs(big["out"] - tiled["out"])[inner]
    scale = np.abs(big["out"]).mean()
    assert diff.mean() < 0.005 * scale, (diff.mean(), scale)
    assert diff.max() < 0.05 * scale, (diff.max(), scale)


def test_progress_events_count_tiles():
    image = np.zeros((2, 37, 53), np.float32)
    config = PredictConfig(tile_size=16, halo=4, device="cpu", batch_size=2)
    plan = plan_tiles((37, 53), tile_size=16, halo=4, multiple=8)
    events = []
    run(predict_tiled(PixelNet(2), image, config=config, multiple=8), events.append)
    total = len(plan.starts)
    assert all(isinstance(e, Progress) and e.stage == "predict" for e in events)
    assert [e.step for e in events] == list(range(2, total, 2)) + [total]
    assert all(e.total == total for e in events)


def test_stop_returns_none():
    image = np.zeros((2, 64, 64), np.float32)
    config = PredictConfig(tile_size=16, halo=0, device="cpu")
    events = []
    result = run(
        predict_tiled(PixelNet(2), image, config=config, multiple=8),
        events.append,
        should_stop=lambda: len(events) == 2,
    )
    assert result is None
    assert len(events) == 2


def test_stop_with_send():
    job = predict_tiled(
        PixelNet(2), np.zeros((2, 32, 32), np.float32), config=PredictConfig(16, 0, "cpu")
    )
    assert isinstance(next(job), Progress)
    with pytest.raises(StopIteration) as info:
        job.send(Stop())
    assert info.value.value is None


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("CPU").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_is_refused_when_unavailable(name):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        select_device(name)


def test_all_tile_orders_agree():
    """Tile size and halo do not matter for a local net, whatever the combination."""
    image = np.random.default_rng(2).normal(size=(2, 21, 30)).astype(np.float32)
    net = PixelNet(2)
    expected = _untiled(net, image)["a"]
    for tile, halo in itertools.product([8, 16], [0, 2, 4]):
        got = run(predict_tiled(net, image, config=PredictConfig(tile, halo, "cpu"), multiple=8))
        np.testing.assert_allclose(got["a"], expected, rtol=1e-5, atol=1e-5)


def test_fitted_tiles_cover_a_block_with_little_waste():
    import math

    from napari_instseg.core.predict import fitted_tile, plan_tiles

    for shape in [(1120, 1120), (2240, 2240), (300, 5000), (64, 624, 624)]:
        tile = fitted_tile(shape, tile_max=1024, halo=32, multiple=16)
        assert all(t % 16 == 0 and t <= max(1024, s + 15) for t, s in zip(tile, shape, strict=True))
        plan = plan_tiles(shape, tile_size=tile, halo=32, multiple=16)
        spent = len(plan.starts) * math.prod(plan.tile_shape) / math.prod(shape)
        assert spent < 1.25  # 512-px tiles spend 1.9x on a 1120² block
