"""Tests for napari_instseg.core.nets.unet: shapes of every head in 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from napari_instseg.core.nets import UNet, UNetConfig, build_unet


@pytest.mark.parametrize(
    ("ndim", "depth", "width", "in_channels", "spatial"),
    [
        (2, 2, 4, 1, (32, 48)),
        (2, 3, 5, 2, (16, 40)),
        (2, 1, 3, 1, (7, 9)),  # depth 1: no pooling, any size works
        (3, 2, 4, 1, (8, 16, 12)),
        (3, 3, 3, 3, (8, 8, 16)),
    ],
)
def test_every_head_has_the_input_size_and_its_channels(ndim, depth, width, in_channels, spatial):
    heads = (("a", 1), ("b", 3), ("c", 7))
    net = build_unet(UNetConfig(ndim, in_channels, depth, width, heads=heads)).eval()
    x = torch.randn(2, in_channels, *spatial)
    with torch.no_grad():
        out = net(x)
    assert list(out) == ["a", "b", "c"]
    for name, channels in heads:
        assert out[name].shape == (2, channels, *spatial)
        assert torch.isfinite(out[name]).all()


def test_size_multiple():
    assert UNetConfig(depth=1).size_multiple == 1
    assert UNetConfig(depth=3).size_multiple == 4
    assert UNetConfig(depth=4).size_multiple == 8


def test_default_head():
    net = UNet(UNetConfig(ndim=2, depth=2, width=4)).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 8, 8))
    assert set(out) == {"out"} and out["out"].shape == (1, 1, 8, 8)


def test_channel_widths_double_with_depth():
    net = UNet(UNetConfig(ndim=2, depth=3, width=5))
    assert [enc[0].out_channels for enc in net.encoders] == [5, 10, 20]
    assert len(net.decoders) == 2


@pytest.mark.parametrize("ndim", [1, 4])
def test_unsupported_ndim_is_refused(ndim):
    with pytest.raises(ValueError, match="2D and 3D"):
        UNet(UNetConfig(ndim=ndim))


def test_depth_zero_is_refused():
    with pytest.raises(ValueError, match="depth"):
        UNet(UNetConfig(depth=0))


def test_build_unet_initialises_head_biases_to_zero():
    net = build_unet(UNetConfig(ndim=2, depth=2, width=4, heads=(("x", 2),)))
    assert torch.all(net.heads["x"].bias == 0)


def test_eval_output_of_a_pixel_does_not_depend_on_far_pixels():
    """BatchNorm in eval mode: no statistics across the tile, so far pixels do not matter."""
    torch.manual_seed(0)
    net = build_unet(UNetConfig(ndim=2, depth=2, width=4)).eval()
    x = torch.randn(1, 1, 64, 64)
    y = x.clone()
    y[..., 40:, 40:] = torch.randn(24, 24) * 10
    with torch.no_grad():
        a, b = net(x)["out"], net(y)["out"]
    torch.testing.assert_close(a[..., :16, :16], b[..., :16, :16])
    assert not torch.allclose(a[..., 48:, 48:], b[..., 48:, 48:])
