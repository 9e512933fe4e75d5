"""All-Cell Segmenter: anchor-based detection guiding a watershed on a learnt height map.

The All-Cell Segmenter ("anchor-based watershed framework"), an entry to the NeurIPS 2022
Cell Segmentation Challenge; public code ``lostkevin/Cell-Segmenter`` (a YOLOv5 fork).

One encoder-decoder predicts, for every image:
- a detection at stride 8: per cell of an 8-pixel grid and per anchor box (anchors = k-means
  of the training objects' box sizes), an objectness and a box, parametrised as in YOLOv5:
  centre = cell + (2 sigma(t) - 0.5) cells, size = (2 sigma(t))^2 x anchor;
- a full-resolution foreground logit;
- a full-resolution "height": each object's Euclidean distance to its border divided by the
  object's median distance + 1 (about 0 at borders, 1 halfway in, up to ~3 in the centres of
  large round cells), which makes one watershed work for small nuclei and large cells alike.

Masks come from the back-end ``detection_watershed``: non-maximum suppression of the boxes with
per-modality thresholds, markers at the box centres, watershed on the height, cells whose
height disagrees with their shape dropped. The modality of the image (fluorescence,
brightfield, phase contrast) picks the thresholds, and on phase-contrast images a low
detection confidence routes to the flows branch below.

Departures from the original, on purpose:
- the backbone is the library's UNet (the original used ResNet-18 from ImageNet weights with a
  YOLOv5 neck; there are no pretrained weights to start from here);
- the Omnipose-style flows branch (heads ``flow``, ``distance``, ``boundary``, with the targets and
  loss of the ``flows`` method) shares the network instead of being a second checkpoint, so the
  fallback costs no second pass and live knobs act on one cached prediction;
- the stride-8 detection is written out per pixel (nearest-neighbour upsampling, box centre as
  a displacement from the pixel, size as its logarithm), so tiled prediction blends it like
  any other map; the loss reads it back on the stride-8 grid;
- objectness: BCE against the detached IoU on assigned cells, a plain mean over cells (no
  per-image 1/#boxes weighting); objects cut by the crop edge neither train a box nor count
  as background; loss weights are set so that the segmentation heads learn within a short CPU
  training (the original's segmentation gain was 0.01 over 300 GPU epochs);
- anchors are fitted by k-means on the training boxes at training time (the original's
  k-means run could not be reproduced and its anchors were fixed by hand).

Heads (all full resolution): ``objectness`` (A logits), ``box`` (4 A: dy, dx, log h, log w per
anchor), ``foreground`` (1), ``height`` (1), ``flow`` (2), ``distance`` (1), ``boundary`` (1).
Decoded arrays: ``foreground``, ``height``, ``boxes`` (N x 4, y0 x0 y1 x1), ``box_scores``
(N), and the flows branch's ``flow``, ``distance``, ``boundary``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from scipy.special import expit
from torch import nn

from ..assembly.detection import height_from_labels
from ..assembly.flows import decode_flows
from ..losses import masked_mean
from ..losses.flows import FlowTerms, flow_loss, flow_targets
from ..nets import UNetConfig, build_unet
from .base import Method

STRIDE = 8
#: Cells per anchor below this objectness are not decoded as candidates.
CANDIDATE_FLOOR = 0.01


@dataclass(frozen=True)
class AllCellConfig:
    """Network shape, anchors and loss weights.

    ``anchors`` are (height, width) pairs in pixels; empty means "fit them to the training
    data" (:func:`fit_anchors`), which training does before building the network.
    """

    ndim: int = 2
    in_channels: int = 1
    depth: int = 5
    width: int = 16
    anchors: tuple[float, ...] = ()
    n_anchors: int = 3
    anchor_ratio: float = 4.0
    w_box: float = 1.0
    w_objectness: float = 1.0
    w_foreground: float = 1.0
    w_height: float = 1.0
    w_flows: float = 0.5

    def __post_init__(self):
        if self.ndim != 2:
            raise ValueError("the All-Cell Segmenter is 2D only (its detection is 2D boxes)")
        if self.depth < 4:
            raise ValueError("allcell needs depth >= 4 (the detection head is at stride 8)")
        if len(self.anchors) % 2:
            raise ValueError("anchors are (height, width) pairs: an even number of values")

    @property
    def anchor_pairs(self) -> np.ndarray:
        return np.asarray(self.anchors, np.float32).reshape(-1, 2)


def _n_anchors(cfg: AllCellConfig) -> int:
    return len(cfg.anchors) // 2 if cfg.anchors else cfg.n_anchors


def heads(cfg: AllCellConfig) -> tuple[tuple[str, int], ...]:
    a = _n_anchors(cfg)
    return (
        ("objectness", a),
        ("box", 4 * a),
        ("foreground", 1),
        ("height", 1),
        ("flow", 2),
        ("distance", 1),
        ("boundary", 1),
    )


class AllCellNet(nn.Module):
    """The library UNet with a detection head on its stride-8 features.

    ``forward`` returns full-resolution maps only (see the module docstring), so prediction
    tiles and blends them like any other network's outputs.
    """

    def __init__(self, cfg: AllCellConfig):
        super().__init__()
        if not cfg.anchors:
            raise ValueError("allcell needs anchors: fit them with fit_anchors(labels) first")
        full_res = tuple(h for h in heads(cfg) if h[0] not in ("objectness", "box"))
        self.body = build_unet(UNetConfig(2, cfg.in_channels, cfg.depth, cfg.width, full_res))
        channels = cfg.width * 2**3
        a = _n_anchors(cfg)
        self.detect = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 5 * a, 1),
        )
        with torch.no_grad():  # objectness starts near 1 % as in YOLOv5
            self.detect[-1].bias.view(a, 5)[:, 4].fill_(-4.6)
        self.register_buffer("anchor_hw", torch.from_numpy(cfg.anchor_pairs), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        body = self.body
        skips = []
        for i, enc in enumerate(body.encoders):
            x = enc(x if i == 0 else body.pool(x))
            skips.append(x)
        level = len(body.encoders) - 1
        coarse = x if level == 3 else None
        for up, dec, skip in zip(body.ups, body.decoders, skips[-2::-1], strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
            level -= 1
            if level == 3:
                coarse = x
        out = {name: head(x) for name, head in body.heads.items()}
        out.update(self._detection(coarse, x.shape[-2:]))
        return out

    def _detection(self, features, size) -> dict[str, torch.Tensor]:
        t = self.detect(features)
        b, _, gh, gw = t.shape
        a = self.anchor_hw.shape[0]
        t = t.view(b, a, 5, gh, gw)
        dev, dt = t.device, t.dtype
        gy = torch.arange(gh, device=dev, dtype=dt).view(1, 1, gh, 1)
        gx = torch.arange(gw, device=dev, dtype=dt).view(1, 1, 1, gw)
        # Centres in pixel-centre coordinates (pixel k is at k).
        cy = (2 * torch.sigmoid(t[:, :, 0]) - 0.5 + gy) * STRIDE - 0.5
        cx = (2 * torch.sigmoid(t[:, :, 1]) - 0.5 + gx) * STRIDE - 0.5
        log_h = 2 * torch.log(2 * torch.sigmoid(t[:, :, 2]) + 1e-6) + torch.log(
            self.anchor_hw[:, 0]
        ).view(1, a, 1, 1)
        log_w = 2 * torch.log(2 * torch.sigmoid(t[:, :, 3]) + 1e-6) + torch.log(
            self.anchor_hw[:, 1]
        ).view(1, a, 1, 1)

        def up(v):  # (B, A, gh, gw) -> (B, A, H, W), each cell's value on its 8 x 8 pixels
            v = v.repeat_interleave(STRIDE, dim=-2).repeat_interleave(STRIDE, dim=-1)
            return v[..., : size[0], : size[1]]

        py = torch.arange(size[0], device=dev, dtype=dt).view(1, 1, -1, 1)
        px = torch.arange(size[1], device=dev, dtype=dt).view(1, 1, 1, -1)
        box = torch.stack([up(cy) - py, up(cx) - px, up(log_h), up(log_w)], dim=2)
        return {"objectness": up(t[:, :, 4]), "box": box.reshape(b, 4 * a, *size)}


def build_net(cfg: AllCellConfig) -> nn.Module:
    return AllCellNet(cfg)


# ----------------------------------------------------------------------------------- anchors


def object_boxes(labels: np.ndarray) -> np.ndarray:
    """(N, 4) boxes [y0, x0, y1, x1] of the objects, in pixel-edge coordinates (y1 exclusive)."""
    boxes = []
    for sl in ndi.find_objects(np.asarray(labels)):
        if sl is not None:
            boxes.append((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop))
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def _wh_iou(sizes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    inter = np.minimum(sizes[:, None], anchors[None]).prod(-1)
    return inter / (sizes.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)


def fit_anchors(label_images, k: int = 3, *, seed: int = 0, iterations: int = 100) -> np.ndarray:
    """k anchor sizes (height, width), sorted by area: k-means of the objects' box sizes.

    The distance is 1 - IoU of boxes sharing a centre (as YOLO's autoanchor), so small and
    large objects are clustered by shape rather than by absolute pixel differences; the
    centres are the medians of their members.
    """
    boxes = np.concatenate([object_boxes(lab) for lab in label_images])
    sizes = boxes[:, 2:] - boxes[:, :2]
    if len(sizes) < k:
        raise ValueError(f"fitting {k} anchors needs at least {k} objects, found {len(sizes)}")
    rng = np.random.default_rng(seed)
    # Start from size quantiles (deterministic and spread over the range), then refine.
    order = np.argsort(sizes.prod(-1))
    centres = sizes[order[((np.arange(k) + 0.5) / k * len(sizes)).astype(int)]].copy()
    for _ in range(iterations):
        assign = _wh_iou(sizes, centres).argmax(1)
        new = centres.copy()
        for j in range(k):
            members = sizes[assign == j]
            new[j] = np.median(members, 0) if len(members) else sizes[rng.integers(len(sizes))]
        if np.allclose(new, centres):
            break
        centres = new
    return centres[np.argsort(centres.prod(-1))].astype(np.float32)


def fit_config(cfg: AllCellConfig, label_images) -> AllCellConfig:
    """Fill in the anchors from the training labels when the config has none."""
    if cfg.anchors:
        return cfg
    anchors = fit_anchors(label_images, cfg.n_anchors)
    return replace(cfg, anchors=tuple(round(float(v), 1) for v in anchors.ravel()))


# ----------------------------------------------------------------------------------- targets


def detection_targets(labels: np.ndarray, cfg: AllCellConfig) -> dict[str, np.ndarray]:
    """Dense YOLOv5-style targets on the stride-8 grid.

    Each object whose box fits an anchor (size ratio below ``anchor_ratio`` both ways) is
    assigned to that anchor in the grid cell holding its centre and in the two neighbouring
    cells nearest the centre (one along y, one along x). ``target`` holds the box
    (cy, cx, h, w) in pixel-centre coordinates, ``positive`` marks assigned (anchor, cell)s,
    ``ignore`` the cells of objects cut by the crop edge (neither box nor background).
    """
    labels = np.asarray(labels)
    anchors = cfg.anchor_pairs
    a = len(anchors)
    gh, gw = -(-labels.shape[0] // STRIDE), -(-labels.shape[1] // STRIDE)
    target = np.zeros((a, 4, gh, gw), np.float32)
    positive = np.zeros((a, gh, gw), bool)
    ignore = np.zeros((a, gh, gw), bool)
    boxes = object_boxes(labels)
    if len(boxes) == 0:
        return _full_resolution(target.reshape(4 * a, gh, gw), positive, ignore, labels.shape)
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2 - 0.5, (boxes[:, 1] + boxes[:, 3]) / 2 - 0.5
    cut = (
        (boxes[:, 0] == 0)
        | (boxes[:, 1] == 0)
        | (boxes[:, 2] == labels.shape[0])
        | (boxes[:, 3] == labels.shape[1])
    )
    ratio = np.maximum(h[:, None] / anchors[None, :, 0], anchors[None, :, 0] / h[:, None])
    ratio = np.maximum(
        ratio, np.maximum(w[:, None] / anchors[None, :, 1], anchors[None, :, 1] / w[:, None])
    )
    for n in np.argsort(-(h * w)):  # large first, so small objects keep a shared cell
        ey, ex = (cy[n] + 0.5) / STRIDE, (cx[n] + 0.5) / STRIDE  # in cell units, edge coords
        iy, ix = min(int(ey), gh - 1), min(int(ex), gw - 1)
        cells = [(iy, ix)]
        ny = iy - 1 if ey - iy < 0.5 else iy + 1
        nx = ix - 1 if ex - ix < 0.5 else ix + 1
        if 0 <= ny < gh:
            cells.append((ny, ix))
        if 0 <= nx < gw:
            cells.append((iy, nx))
        for k in np.flatnonzero(ratio[n] < cfg.anchor_ratio):
            for y, x in cells:
                if cut[n]:
                    ignore[k, y, x] = True
                else:
                    target[k, :, y, x] = (cy[n], cx[n], h[n], w[n])
                    positive[k, y, x] = True
    ignore &= ~positive
    return _full_resolution(target.reshape(4 * a, gh, gw), positive, ignore, labels.shape)


def _full_resolution(target, positive, ignore, shape) -> dict[str, np.ndarray]:
    """Grid targets repeated over each cell's pixels, so every target is an image-sized map
    (the loss reads them back at the grid points)."""

    def up(v):
        return np.repeat(np.repeat(v, STRIDE, -2), STRIDE, -1)[..., : shape[0], : shape[1]]

    return {"det_target": up(target), "det_positive": up(positive), "det_ignore": up(ignore)}


def make_targets(labels: np.ndarray, known: np.ndarray, cfg: AllCellConfig) -> dict:
    labels = np.asarray(labels)
    out = {f"flows_{k}": v for k, v in flow_targets(labels, known, FlowTerms()).items()}
    out.update(detection_targets(labels, cfg))
    out["foreground"] = (labels > 0).astype(np.float32)
    out["height"] = height_from_labels(labels)
    out["known"] = np.asarray(known, bool)
    return out


# -------------------------------------------------------------------------------------- loss


def box_ciou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and complete IoU of boxes given as (..., 4) = (cy, cx, h, w)."""
    a0, a1 = a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2
    b0, b1 = b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2
    inter = (torch.minimum(a1, b1) - torch.maximum(a0, b0)).clamp(min=0).prod(-1)
    union = a[..., 2:].prod(-1) + b[..., 2:].prod(-1) - inter + 1e-7
    iou = inter / union
    enclose = (torch.maximum(a1, b1) - torch.minimum(a0, b0)).pow(2).sum(-1) + 1e-7
    centre = (a[..., :2] - b[..., :2]).pow(2).sum(-1)
    v = (4 / torch.pi**2) * (
        torch.atan(b[..., 3] / (b[..., 2] + 1e-7)) - torch.atan(a[..., 3] / (a[..., 2] + 1e-7))
    ).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + 1 + 1e-7)
    return iou, iou - centre / enclose - alpha * v


def _on_grid(outputs: dict, a: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Objectness logits (B, A, gh, gw) and boxes (B, A, gh, gw, 4) read on the stride-8 grid."""
    obj = outputs["objectness"][..., 3::STRIDE, 3::STRIDE]
    raw = outputs["box"][..., 3::STRIDE, 3::STRIDE]
    b, _, gh, gw = raw.shape
    raw = raw.reshape(b, a, 4, gh, gw)
    py = (torch.arange(gh, device=raw.device, dtype=raw.dtype) * STRIDE + 3).view(1, 1, -1, 1)
    px = (torch.arange(gw, device=raw.device, dtype=raw.dtype) * STRIDE + 3).view(1, 1, 1, -1)
    boxes = torch.stack(
        [raw[:, :, 0] + py, raw[:, :, 1] + px, raw[:, :, 2].exp(), raw[:, :, 3].exp()], -1
    )
    return obj, boxes


def make_loss(cfg: AllCellConfig):
    terms = FlowTerms()
    a = _n_anchors(cfg)

    def loss(outputs: dict, targets: dict) -> torch.Tensor:
        known = targets["known"]
        obj, boxes = _on_grid(outputs, a)
        positive = targets["det_positive"][..., 3::STRIDE, 3::STRIDE]
        grid = targets["det_target"][..., 3::STRIDE, 3::STRIDE]
        target_boxes = grid.reshape(grid.shape[0], a, 4, *grid.shape[-2:]).permute(0, 1, 3, 4, 2)
        obj_target = torch.zeros_like(obj)
        box_term = obj.new_zeros(())
        if positive.any():
            iou, ciou = box_ciou(boxes[positive], target_boxes[positive])
            box_term = (1.0 - ciou).mean()
            obj_target[positive] = iou.detach().clamp(min=0).to(obj.dtype)
        counted = ~targets["det_ignore"][..., 3::STRIDE, 3::STRIDE]
        bce = F.binary_cross_entropy_with_logits(obj, obj_target, reduction="none")
        obj_term = masked_mean(bce, counted)
        fg = F.binary_cross_entropy_with_logits(
            outputs["foreground"][:, 0], targets["foreground"], reduction="none"
        )
        height = (outputs["height"][:, 0] - targets["height"]) ** 2
        flows_part = {k[6:]: v for k, v in targets.items() if k.startswith("flows_")}
        return (
            cfg.w_box * box_term
            + cfg.w_objectness * obj_term
            + cfg.w_foreground * masked_mean(fg, known)
            + cfg.w_height * masked_mean(height, known)
            + cfg.w_flows * flow_loss(outputs, flows_part, terms)
        )

    return loss


# ------------------------------------------------------------------------------------ decode


def decode_boxes(raw, cfg: AllCellConfig) -> tuple[np.ndarray, np.ndarray]:
    """Candidate boxes [y0, x0, y1, x1] and scores, one per anchor per 8 x 8 cell."""
    a = _n_anchors(cfg)
    obj = np.asarray(raw["objectness"], np.float32)[:, 3::STRIDE, 3::STRIDE]
    box = np.asarray(raw["box"], np.float32)[:, 3::STRIDE, 3::STRIDE]
    gh, gw = obj.shape[1:]
    box = box.reshape(a, 4, gh, gw)
    score = expit(obj)
    keep = score >= CANDIDATE_FLOOR
    k, iy, ix = np.nonzero(keep)
    cy = box[k, 0, iy, ix] + iy * STRIDE + 3
    cx = box[k, 1, iy, ix] + ix * STRIDE + 3
    h, w = np.exp(box[k, 2, iy, ix]), np.exp(box[k, 3, iy, ix])
    # Pixel-centre coordinates back to pixel edges: a box over pixels 0..n-1 is [0, n].
    boxes = np.stack([cy - h / 2 + 0.5, cx - w / 2 + 0.5, cy + h / 2 + 0.5, cx + w / 2 + 0.5], 1)
    return boxes.astype(np.float32).reshape(-1, 4), score[keep].astype(np.float32)


def decode(raw, cfg: AllCellConfig) -> dict[str, np.ndarray]:
    boxes, scores = decode_boxes(raw, cfg)
    out = decode_flows(raw, FlowTerms().flow_scale)  # its display "foreground" is replaced
    out.update(
        {
            "foreground": expit(np.asarray(raw["foreground"], np.float32)[0]),
            "height": np.asarray(raw["height"], np.float32)[0],
            "boxes": boxes,
            "box_scores": scores,
        }
    )
    return out


METHOD = Method(
    name="allcell",
    config_type=AllCellConfig,
    heads=heads,
    build_net=build_net,
    make_targets=make_targets,
    make_loss=make_loss,
    decode=decode,
    default_backend="detection_watershed",
    backends=("detection_watershed", "flow_dynamics"),
    description="All-Cell Segmenter: stride-8 anchor detection, foreground and height map, "
    "detection-guided watershed, modality routing with a flows fallback",
    ndims=(2,),
    fit_config=fit_config,
)
