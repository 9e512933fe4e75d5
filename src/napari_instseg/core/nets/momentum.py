"""A network and its momentum twin, the second view that SPOCO's consistency loss compares to.

``MomentumPair`` holds a network f, trained by gradients, and a copy g whose parameters follow
f as an exponential moving average (``g <- m g + (1 - m) f``) and never receive gradients. Its
``forward`` runs f on the input and g, without gradients, on a photometrically perturbed view
of the same input, and returns f's heads plus g's heads with a suffix.

Unlike the reference code, g is updated only in training mode: evaluating or predicting never
changes the weights. In training the view is perturbed at random (contrast, brightness, blur);
in evaluation the perturbation is a fixed one, so tiles of one image see the same view and
results are reproducible.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

#: Fixed view used in evaluation: contrast, brightness and blur sigma (pixels).
EVAL_VIEW = (0.8, 0.05, 1.0)


def _gaussian_kernel(sigma: float, ndim: int, channels: int, device, dtype) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k1 = torch.exp(-(x**2) / (2 * sigma**2))
    k1 = k1 / k1.sum()
    kernel = k1
    for _ in range(ndim - 1):
        kernel = kernel[..., None] * k1
    return kernel.expand(channels, 1, *kernel.shape).contiguous()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(B, C, *spatial)``; borders are extended by replication."""
    if sigma <= 0:
        return x
    ndim = x.ndim - 2
    kernel = _gaussian_kernel(sigma, ndim, x.shape[1], x.device, x.dtype)
    x = F.pad(x, [kernel.shape[-1] // 2] * (2 * ndim), mode="replicate")
    conv = F.conv2d if ndim == 2 else F.conv3d
    return conv(x, kernel, groups=x.shape[1])


def perturb(x: torch.Tensor, *, training: bool) -> torch.Tensor:
    """The second view: random contrast, brightness and (half the time) blur per image in
    training; the fixed ``EVAL_VIEW`` otherwise. Uses torch's global RNG."""
    if not training:
        contrast, brightness, sigma = EVAL_VIEW
        return blur(x * contrast + brightness, sigma)
    out = []
    for xi in x:
        contrast = float(torch.empty(()).uniform_(0.6, 1.4))
        brightness = float(torch.empty(()).uniform_(-0.2, 0.2))
        xi = xi[None] * contrast + brightness
        if float(torch.rand(())) < 0.5:
            xi = blur(xi, float(torch.empty(()).uniform_(0.1, 2.0)))
        out.append(xi)
    return torch.cat(out)


class MomentumPair(nn.Module):
    """f (trained) and g (its moving average) in one module; both are saved with it.

    ``g_heads`` names g's outputs to return (all by default), each as ``name + suffix``.
    """

    def __init__(
        self,
        net: nn.Module,
        momentum: float = 0.999,
        g_heads: tuple[str, ...] | None = None,
        suffix: str = "_g",
    ):
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.f = net
        self.g = copy.deepcopy(net)
        for p in self.g.parameters():
            p.requires_grad_(False)
        self.momentum = momentum
        self.g_heads = g_heads
        self.suffix = suffix

    @torch.no_grad()
    def update_momentum(self) -> None:
        """``g <- m g + (1 - m) f`` for the parameters (g keeps its own BatchNorm buffers)."""
        for pg, pf in zip(self.g.parameters(), self.f.parameters(), strict=True):
            pg.mul_(self.momentum).add_(pf.detach(), alpha=1 - self.momentum)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.f(x))
        with torch.no_grad():
            if self.training:
                self.update_momentum()
            out_g = self.g(perturb(x, training=self.training))
        keep = out_g if self.g_heads is None else self.g_heads
        out.update({name + self.suffix: out_g[name].detach() for name in keep})
        return out
