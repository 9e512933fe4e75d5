"""PatchPerPix: a dense local shape patch per pixel, assembled by consensus voting.

Mais, Hirsch, Kainmueller, "PatchPerPix for Instance Segmentation", ECCV 2020.

For every pixel ``c`` the network predicts a binary shape patch ``A_c`` of ``p**d`` values over
the offsets ``-r..r`` (``r = p // 2``) on each axis: ``A_c(o)`` is the probability that pixel
``c + o`` belongs to the same object as ``c``. A foreground head says which pixels are objects.
Instances come from the back-end ``patch_consensus``: every foreground patch votes on the pixel
pairs it covers, patches are ranked by their agreement with the votes, a few good patches are
chosen to cover the foreground, and the graph of the chosen patches is cut.

Two variants, as in the paper:

- ``code_units = 0`` ("ppp"): the network's patch head has ``p**d`` channels;
- ``code_units > 0`` ("ppp+dec", the default): the network predicts a short code per pixel
  (sigmoid) and a jointly trained decoder expands a code into patch logits. The code is what
  tiled prediction keeps, so a prediction stays small (32 channels instead of 625 for a 25x25
  patch); patches are decoded only for foreground pixels.

Training (both variants): up to ``samples_per_image`` known foreground pixels are drawn per
image and step; their patch logits are compared with the ground-truth patch (1 where the
partner pixel has the same object id, 0 where it is known to be another object or
background) by binary cross-entropy, skipping partner pixels that are unknown or outside the
crop, so sparse annotations train correctly. The foreground head gets a BCE on known pixels.

Departures from the reference code, on purpose:

- the decoder is a two-layer perceptron (code -> hidden -> patch logits), not the reference's
  upsampling convolution stack: decoding every foreground pixel of a 1024² image on a CPU is
  then a few matrix products (the reference decodes on a GPU);
- the patch loss is taken at sampled foreground pixels in both variants (the reference's ppp
  loss ran over all pixels and channels, background ones included, whose targets are all zero;
  ours leaves background to the foreground head);
- no number-of-instances head: the shipped data has no overlapping objects, for which alone
  that head changes the assembly;
- the backbone is the library's UNet (same padding, BatchNorm), not a valid-padded UNet.

Heads: ``code`` (``code_units``) or ``patch`` (``p**d``), and ``foreground`` (1). The decoder's
weights reach :func:`decode` as constants of the prediction (see ``Prediction.raw``).
Decoded arrays: ``foreground`` (probability), ``patches`` (F x p**d uint8, probability x 255,
one row per decoded pixel), ``patch_pixels`` (F linear indices of those pixels, raster order)
and ``patch_shape`` (ndim patch extents).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import nn

from ..arrays import InputError
from ..assembly.patches import patch_offsets
from ..losses import known_instances, masked_mean
from ..nets import UNetConfig, build_unet
from .base import Method

#: Names of the decoder's weights among a prediction's raw arrays and a training step's outputs.
DECODER_KEYS = ("decoder_w1", "decoder_b1", "decoder_w2", "decoder_b2")


@dataclass(frozen=True)
class PatchPerPixConfig:
    """Network shape, patch size and loss weights (paper defaults where they fit a CPU)."""

    ndim: int = 2
    in_channels: int = 1
    depth: int = 4
    width: int = 16
    patch_size: int = 25  # odd, per axis (dsb2018 setups: 25x25; 3D: 9x9x9)
    code_units: int = 32  # 0: plain ppp, the network predicts the whole patch
    decoder_hidden: int = 128
    samples_per_image: int = 1024  # the reference's num_code_samples
    decode_min_fg: float = 0.3  # patches are decoded where foreground >= this
    w_patch: float = 1.0
    w_foreground: float = 1.0

    @property
    def patch_shape(self) -> tuple[int, ...]:
        return (self.patch_size,) * self.ndim

    def __post_init__(self):
        _check(self)  # a bad value is refused where the config is made, before any work

    @property
    def patch_len(self) -> int:
        return self.patch_size**self.ndim


def _check(cfg: PatchPerPixConfig) -> None:
    if cfg.patch_size < 3 or cfg.patch_size % 2 == 0:
        raise InputError(f"patch_size must be odd and at least 3, got {cfg.patch_size}")
    if cfg.ndim not in (2, 3):
        raise InputError(f"patchperpix supports 2D and 3D, not {cfg.ndim}D")


class PatchDecoder(nn.Module):
    """Code (in [0, 1]) -> hidden (ReLU) -> patch logits."""

    def __init__(self, code_units: int, hidden: int, patch_len: int):
        super().__init__()
        self.fc1 = nn.Linear(code_units, hidden)
        self.fc2 = nn.Linear(hidden, patch_len)
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc1.bias)
        nn.init.xavier_uniform_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def weights(self) -> dict[str, torch.Tensor]:
        values = (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
        return dict(zip(DECODER_KEYS, values, strict=True))


def decode_logits(code: torch.Tensor, weights) -> torch.Tensor:
    """Patch logits ``(N, P)`` from codes ``(N, C)`` in [0, 1] and the decoder's weights."""
    w1, b1, w2, b2 = (weights[k] for k in DECODER_KEYS)
    return F.linear(F.relu(F.linear(code, w1, b1)), w2, b2)


class PatchNet(nn.Module):
    """The UNet, plus the code decoder for ppp+dec.

    In training, ``forward`` also returns the decoder's weights (so that the loss, which sees
    only the outputs, can decode the sampled codes); :meth:`raw_constants` hands the same
    weights to tiled prediction, which keeps them next to the maps.
    """

    def __init__(self, cfg: PatchPerPixConfig):
        super().__init__()
        self.unet = build_unet(
            UNetConfig(cfg.ndim, cfg.in_channels, cfg.depth, cfg.width, heads(cfg))
        )
        self.decoder = (
            PatchDecoder(cfg.code_units, cfg.decoder_hidden, cfg.patch_len)
            if cfg.code_units
            else None
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.unet(x)
        if self.training and self.decoder is not None:
            out.update(self.decoder.weights())
        return out

    def raw_constants(self) -> dict[str, np.ndarray]:
        if self.decoder is None:
            return {}
        return {k: v.detach().float().cpu().numpy() for k, v in self.decoder.weights().items()}


def heads(cfg: PatchPerPixConfig) -> tuple[tuple[str, int], ...]:
    if cfg.code_units:
        return (("code", cfg.code_units), ("foreground", 1))
    return (("patch", cfg.patch_len), ("foreground", 1))


def build_net(cfg: PatchPerPixConfig) -> nn.Module:
    _check(cfg)
    return PatchNet(cfg)


def make_targets(labels: np.ndarray, known: np.ndarray, cfg: PatchPerPixConfig) -> dict:
    """Object ids where known (0 elsewhere) and the known-pixel mask."""
    return known_instances(labels, known)


def sample_centres(instances: torch.Tensor, n: int) -> torch.Tensor:
    """Up to ``n`` random object pixels per image: ``(M, 1 + ndim)`` (batch index, coords)."""
    rows = []
    for b in range(instances.shape[0]):
        where = torch.nonzero(instances[b] > 0)
        if len(where) > n:
            where = where[torch.randperm(len(where), device=where.device)[:n]]
        rows.append(torch.cat([torch.full_like(where[:, :1], b), where], dim=1))
    return torch.cat(rows) if rows else torch.zeros((0, instances.ndim), dtype=torch.long)


def patch_targets(instances, known, centres, offsets):
    """Ground-truth patches at ``centres`` and which of their elements count.

    An element counts when its pixel is inside the crop and known; it is 1 when that pixel
    carries the centre's object id.
    """
    spatial = torch.tensor(instances.shape[1:], device=instances.device)
    pos = centres[:, None, 1:] + offsets[None]  # (M, P, ndim)
    inside = ((pos >= 0) & (pos < spatial)).all(-1)
    pos = torch.minimum(pos.clamp_min(0), spatial - 1)
    b = centres[:, :1].expand(-1, offsets.shape[0])
    index = (b, *pos.unbind(-1))
    ids = instances[index]
    centre_ids = instances[(centres[:, 0], *centres[:, 1:].unbind(-1))]
    target = (ids == centre_ids[:, None]).to(torch.float32)
    return target, inside & known[index]


def patch_logits_at(outputs: dict, centres: torch.Tensor) -> torch.Tensor:
    """Patch logits ``(M, P)`` at the sampled pixels, through the decoder for ppp+dec."""
    index = (centres[:, 0], slice(None), *centres[:, 1:].unbind(-1))
    if "code" in outputs:
        code = torch.sigmoid(outputs["code"][index])
        return decode_logits(code, outputs)
    return outputs["patch"][index]


def make_loss(cfg: PatchPerPixConfig):
    offsets_np = patch_offsets(cfg.patch_shape)

    def loss(outputs: dict, targets: dict) -> torch.Tensor:
        fg = outputs["foreground"]
        instances, known = targets["instances"], targets["known"]
        bce = F.binary_cross_entropy_with_logits(
            fg[:, 0], (instances > 0).to(fg.dtype), reduction="none"
        )
        total = cfg.w_foreground * masked_mean(bce, known)
        centres = sample_centres(instances, cfg.samples_per_image)
        if len(centres):
            offsets = torch.from_numpy(offsets_np).to(instances.device)
            target, valid = patch_targets(instances, known, centres, offsets)
            logits = patch_logits_at(outputs, centres)
            per = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            total = total + cfg.w_patch * masked_mean(per, valid)
        return total

    return loss


def decode(raw, cfg: PatchPerPixConfig, *, chunk: int = 65536) -> dict[str, np.ndarray]:
    """Foreground probability and the patches of the pixels that may be foreground."""
    fg = expit(np.asarray(raw["foreground"], np.float32)[0])
    pixels = np.flatnonzero(fg.ravel() >= cfg.decode_min_fg)
    patches = np.empty((len(pixels), cfg.patch_len), np.uint8)
    if cfg.code_units:
        missing = [k for k in DECODER_KEYS if k not in raw]
        if missing:
            raise ValueError(f"this prediction lacks the patch decoder's weights {missing}")
        weights = {k: torch.from_numpy(np.asarray(raw[k], np.float32)) for k in DECODER_KEYS}
        maps = np.asarray(raw["code"], np.float32).reshape(cfg.code_units, -1)
    else:
        maps = np.asarray(raw["patch"], np.float32).reshape(cfg.patch_len, -1)
    with torch.inference_mode():
        for start in range(0, len(pixels), chunk):
            sel = pixels[start : start + chunk]
            values = torch.from_numpy(np.ascontiguousarray(maps[:, sel].T))
            if cfg.code_units:
                values = decode_logits(torch.sigmoid(values), weights)
            prob = torch.sigmoid(values) * 255.0 + 0.5
            patches[start : start + len(sel)] = prob.to(torch.uint8).numpy()
    return {
        "foreground": fg,
        "patches": patches,
        "patch_pixels": pixels.astype(np.int64),
        "patch_shape": np.asarray(cfg.patch_shape, np.int64),
    }


METHOD = Method(
    name="patchperpix",
    config_type=PatchPerPixConfig,
    heads=heads,
    build_net=build_net,
    make_targets=make_targets,
    make_loss=make_loss,
    decode=decode,
    default_backend="patch_consensus",
    backends=("patch_consensus",),
    description="PatchPerPix: a shape patch per pixel (from a decoded code), assembled by "
    "consensus voting",
    sparse_labels=True,
)
