"""Omnipose-style flows: a distance to the boundary and its unit gradient, followed to masks.

Cutler, Stringer, Lo, Rappez, Stroustrup, Peterson, Wiggins, Mougous, "Omnipose: a
high-precision morphology-independent solution for bacterial cell segmentation", Nature
Methods 19, 1438-1448 (2022).

Every object pixel predicts a smooth distance to its object's boundary (the eikonal solution
on the object's own pixels, negative on background) and the unit gradient of that distance,
which points away from the boundary towards the object's medial ridge whatever the object's
shape (Cellpose's flows point to a centre, which splits long or bent cells). A boundary map is
learnt alongside. Masks come from following the flows (back-end ``flow_dynamics``): pixels
that end up in one cloud form one object.

Heads: ``flow`` (ndim, the gradient times ``flow_scale`` = 5, as Omnipose), ``distance`` (1),
``boundary`` (1, logit). Decoded arrays: ``flow`` (ndim, *S) unit-ish vectors in ZYX order,
``distance`` (*S), ``boundary`` (*S, probability) and ``foreground`` (*S): the sigmoid of the
distance, a display map rather than a calibrated probability.

Loss, over known pixels only (so sparse annotations train it): weighted mean squared error of
the flow against 5 mu and of the distance against the target (background at
``distance_background`` = -5), both divided by 5^2 and weighted 1 inside objects and 1/2
outside, plus the binary cross-entropy of the boundary; weights 10, 2 and 2 as in Omnipose.

Departures from Omnipose, on purpose:
- the distance is solved by fast sweeping rather than Omnipose's iterated update, and its
  gradient is a plain Prewitt estimate without Omnipose's affinity-weighted smoothing
  (see :mod:`napari_instseg.core.flow_fields`);
- the loss keeps only the three terms above; Omnipose's angle (arccos), flow-norm,
  derivative and divergence terms are left out;
- the backbone is the library's UNet, and objects cut by a crop edge are assumed to continue
  past it (no boundary on the crop edge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..assembly.flows import decode_flows
from ..losses.flows import FlowTerms, flow_loss, flow_targets
from ..nets import UNetConfig, build_unet
from .base import Method


@dataclass(frozen=True)
class FlowsConfig:
    """Network shape, target scaling and loss weights (Omnipose's defaults)."""

    ndim: int = 2
    in_channels: int = 1
    depth: int = 4
    width: int = 16
    flow_scale: float = 5.0
    distance_background: float = -5.0
    w_flow: float = 10.0
    w_distance: float = 2.0
    w_boundary: float = 2.0


def heads(cfg: FlowsConfig) -> tuple[tuple[str, int], ...]:
    return (("flow", cfg.ndim), ("distance", 1), ("boundary", 1))


def build_net(cfg: FlowsConfig) -> torch.nn.Module:
    return build_unet(UNetConfig(cfg.ndim, cfg.in_channels, cfg.depth, cfg.width, heads(cfg)))


def _terms(cfg: FlowsConfig) -> FlowTerms:
    return FlowTerms(
        cfg.flow_scale, cfg.distance_background, cfg.w_flow, cfg.w_distance, cfg.w_boundary
    )


def make_targets(labels: np.ndarray, known: np.ndarray, cfg: FlowsConfig) -> dict:
    return flow_targets(labels, known, _terms(cfg))


def make_loss(cfg: FlowsConfig):
    terms = _terms(cfg)

    def loss(outputs: dict, targets: dict) -> torch.Tensor:
        return flow_loss(outputs, targets, terms)

    return loss


def decode(raw, cfg: FlowsConfig) -> dict[str, np.ndarray]:
    return decode_flows(raw, cfg.flow_scale)


METHOD = Method(
    name="flows",
    config_type=FlowsConfig,
    heads=heads,
    build_net=build_net,
    make_targets=make_targets,
    make_loss=make_loss,
    decode=decode,
    default_backend="flow_dynamics",
    backends=("flow_dynamics",),
    description="Omnipose-style flows: eikonal distance and its unit gradient, followed to masks",
    sparse_labels=True,
    head_kinds={"flow": "vector", "distance": "scalar", "boundary": "scalar"},
)
