"""All-Cell Segmenter method: anchors, targets, the per-pixel detection maps and decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_instseg.core.methods import allcell, get_method
from napari_instseg.core.methods.allcell import STRIDE, AllCellConfig

CFG = AllCellConfig(depth=4, width=4, anchors=(10.0, 10.0, 20.0, 30.0, 40.0, 40.0))


def rectangles(shape, boxes):
    labels = np.zeros(shape, np.uint16)
    for i, (y0, x0, y1, x1) in enumerate(boxes, start=1):
        labels[y0:y1, x0:x1] = i
    return labels


def test_config_refuses_3d_shallow_nets_and_odd_anchors():
    with pytest.raises(ValueError, match="2D only"):
        AllCellConfig(ndim=3)
    with pytest.raises(ValueError, match="depth"):
        AllCellConfig(depth=3)
    with pytest.raises(ValueError, match="pairs"):
        AllCellConfig(anchors=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="anchors"):
        allcell.build_net(AllCellConfig())


def test_fit_anchors_finds_the_three_object_sizes():
    rng = np.random.default_rng(0)
    images = []
    for _ in range(6):
        labels = np.zeros((200, 200), np.uint16)
        k = 1
        for h, w in ((6, 6), (12, 24), (40, 40)):
            for _ in range(3):
                y, x = rng.integers(0, 200 - h), rng.integers(0, 200 - w)
                if not labels[y : y + h, x : x + w].any():
                    labels[y : y + h, x : x + w] = k
                    k += 1
        images.append(labels)
    anchors = allcell.fit_anchors(images, 3)
    np.testing.assert_allclose(anchors, [[6, 6], [12, 24], [40, 40]])
    cfg = allcell.fit_config(AllCellConfig(), images)
    assert cfg.anchors == (6.0, 6.0, 12.0, 24.0, 40.0, 40.0)
    assert allcell.fit_config(CFG, images) is CFG  # given anchors are kept


def test_targets_assign_centre_cell_and_two_neighbours_and_ignore_cut_objects():
    labels = rectangles((64, 64), [(10, 13, 30, 43), (50, 0, 60, 10)])  # 2nd touches the edge
    t = allcell.detection_targets(labels, CFG)
    pos = t["det_positive"][..., 3::STRIDE, 3::STRIDE]
    ign = t["det_ignore"][..., 3::STRIDE, 3::STRIDE]
    # Box 1: 20 x 30, centre (19.5, 27.5): cell (2, 3) and its nearest neighbours (3, 3)
    # and (2, 4); anchors within ratio 4: all three.
    for k in range(3):
        assert set(zip(*np.nonzero(pos[k]), strict=True)) == {(2, 3), (3, 3), (2, 4)}
    grid = t["det_target"][:, 3::STRIDE, 3::STRIDE].reshape(3, 4, 8, 8)
    np.testing.assert_allclose(grid[1, :, 2, 3], [19.5, 27.5, 20, 30])
    assert ign.any() and not (ign & pos).any()
    assert pos[:, 6:, :2].sum() == 0  # the cut object trains no box
    for key, value in t.items():
        assert value.shape[-2:] == labels.shape, key


def test_perfect_maps_decode_to_the_true_boxes():
    """Coordinates end to end: targets written as the network's per-pixel maps decode back."""
    truth = [(5, 6, 25, 18), (30, 33, 60, 63), (40, 2, 50, 12)]
    labels = rectangles((64, 72), truth)
    t = allcell.detection_targets(labels, CFG)
    a = 3
    pos = t["det_positive"]
    target = t["det_target"].reshape(a, 4, *labels.shape)
    py, px = np.mgrid[: labels.shape[0], : labels.shape[1]].astype(np.float32)
    box = np.stack(
        [
            target[:, 0] - py,
            target[:, 1] - px,
            np.log(target[:, 2] + 1e-9),
            np.log(target[:, 3] + 1e-9),
        ],
        1,
    ).reshape(4 * a, *labels.shape)
    raw = {"objectness": np.where(pos, 10.0, -10.0).astype(np.float32), "box": box}
    boxes, scores = allcell.decode_boxes(raw, CFG)
    assert len(boxes) == pos[..., 3::STRIDE, 3::STRIDE].sum()
    assert (scores > 0.99).all()
    found = {tuple(np.round(b).astype(int)) for b in boxes}
    assert found == set(truth)


def test_network_maps_are_one_box_per_cell():
    """Every pixel of an 8 x 8 cell points at the same box centre with the same size."""
    torch.manual_seed(0)
    net = allcell.build_net(CFG).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 32, 40))
    box = out["box"][0].numpy().reshape(3, 4, 32, 40)
    py, px = np.mgrid[:32, :40]
    cy, cx = box[:, 0] + py, box[:, 1] + px
    for v in (cy, cx, box[:, 2], out["objectness"][0].numpy()):
        cells = v.reshape(3, 4, 8, 5, 8)
        np.testing.assert_allclose(
            cells, cells[:, :, :1, :, :1].repeat(8, 2).repeat(8, 4), atol=1e-4
        )
    # Centres stay within one cell of their own cell, sizes within (0, 4) x anchor.
    assert np.all(np.abs(cy - (py // 8 * 8 + 3.5)) <= 12.01)
    hw = np.exp(box[:, 2:4]).reshape(3, 2, -1)
    assert np.all(hw < 4 * np.asarray(CFG.anchor_pairs)[:, :, None] + 1e-3)


def test_training_a_tiny_model_finds_boxes():
    """A few hundred steps on one image: the decoded boxes cover the objects."""
    method = get_method("allcell")
    truth = [(4, 4, 20, 20), (6, 30, 26, 46), (36, 10, 56, 26), (40, 40, 60, 58)]
    labels = rectangles((64, 64), truth)
    image = (labels > 0).astype(np.float32)[None, None]
    torch.manual_seed(0)
    cfg = AllCellConfig(depth=4, width=8, anchors=(16.0, 16.0, 20.0, 20.0))
    net = method.build_net(cfg).train()
    targets = {
        k: torch.from_numpy(v[None])
        for k, v in method.make_targets(labels, labels >= 0, cfg).items()
    }
    loss_fn = method.make_loss(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = torch.from_numpy(image)
    for _ in range(150):
        loss = loss_fn(net(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        raw = {k: v[0].numpy() for k, v in net(x).items()}
    boxes, scores = allcell.decode_boxes(raw, cfg)
    best = boxes[scores > 0.3]
    for y0, x0, y1, x1 in truth:
        inter = np.clip(np.minimum(best[:, 2], y1) - np.maximum(best[:, 0], y0), 0, None) * np.clip(
            np.minimum(best[:, 3], x1) - np.maximum(best[:, 1], x0), 0, None
        )
        union = (
            (best[:, 2] - best[:, 0]) * (best[:, 3] - best[:, 1]) + (y1 - y0) * (x1 - x0) - inter
        )
        assert (inter / union).max() > 0.5
