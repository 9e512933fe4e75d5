"""A UNet for 2D and 3D images with configurable depth, width and named output heads.

BatchNorm (not GroupNorm or InstanceNorm) is used on purpose: in evaluation mode it applies
fixed statistics, so a tile's output does not depend on which other pixels share the tile,
which tiled prediction with blended overlaps relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a UNet.

    ``heads`` maps output names to channel counts; each head is a 1x1 convolution on the last
    decoder features, so all heads share the body.
    """

    ndim: int = 2
    in_channels: int = 1
    depth: int = 4
    width: int = 32
    heads: tuple[tuple[str, int], ...] = field(default_factory=lambda: (("out", 1),))

    @property
    def size_multiple(self) -> int:
        """Spatial sizes must be a multiple of this (one factor 2 per pooling)."""
        return 2 ** (self.depth - 1)


def _conv(ndim: int) -> type[nn.Module]:
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _block(ndim: int, cin: int, cout: int) -> nn.Sequential:
    conv, norm = _conv(ndim), (nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d)
    return nn.Sequential(
        conv(cin, cout, 3, padding=1, bias=False),
        norm(cout),
        nn.ReLU(inplace=True),
        conv(cout, cout, 3, padding=1, bias=False),
        norm(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections; ``forward`` returns a dict of head outputs."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        if config.ndim not in (2, 3):
            raise ValueError(f"UNet supports 2D and 3D, not {config.ndim}D")
        if config.depth < 1:
            raise ValueError("UNet depth must be at least 1")
        self.config = config
        nd = config.ndim
        widths = [config.width * 2**i for i in range(config.depth)]
        self.encoders = nn.ModuleList()
        cin = config.in_channels
        for w in widths:
            self.encoders.append(_block(nd, cin, w))
            cin = w
        self.pool = nn.MaxPool2d(2) if nd == 2 else nn.MaxPool3d(2)
        up = nn.ConvTranspose2d if nd == 2 else nn.ConvTranspose3d
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_low, w_high in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.ups.append(up(w_low, w_high, 2, stride=2))
            self.decoders.append(_block(nd, 2 * w_high, w_high))
        self.heads = nn.ModuleDict({name: _conv(nd)(widths[0], ch, 1) for name, ch in config.heads})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, dec, skip in zip(self.ups, self.decoders, skips[-2::-1], strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return {name: head(x) for name, head in self.heads.items()}


def build_unet(config: UNetConfig) -> UNet:
    """Build a UNet with Kaiming-initialised convolutions."""
    net = UNet(config)
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net
