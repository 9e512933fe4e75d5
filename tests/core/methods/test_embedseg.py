"""EmbedSeg targets, loss and decoding on small problems with known answers."""

from __future__ import annotations

import numpy as np
import torch

from napari_instseg.core.methods import get_method
from napari_instseg.core.methods.embedseg import approximate_medoids

METHOD = get_method("embedseg")


def _labels():
    labels = np.zeros((32, 32), np.uint32)
    labels[2:10, 2:12] = 1
    labels[15:30, 18:22] = 2
    yy, xx = np.mgrid[:32, :32]
    labels[(yy - 22) ** 2 + (xx - 8) ** 2 < 25] = 3
    # a C-shaped object whose centroid lies outside it
    labels[2:12, 20:30] = 4
    labels[5:9, 23:30] = 0
    return labels


def test_medoids_one_per_object_and_inside_it():
    labels = _labels()
    centres = approximate_medoids(labels)
    assert centres.sum() == 4
    assert sorted(labels[centres].tolist()) == [1, 2, 3, 4]
    ys, xs = np.nonzero(centres & (labels == 1))
    assert (ys[0], xs[0]) in {(5, 6), (6, 6), (5, 7), (6, 7)}  # the middle of rows 2-9, cols 2-11


def _outputs_for(labels, cfg, *, perfect):
    """Network outputs: ideal offsets (every pixel points at its object's medoid) or zeros."""
    h, w = labels.shape
    offsets = np.zeros((2, h, w), np.float32)
    if perfect:
        centres = approximate_medoids(labels)
        for k in np.unique(labels[labels > 0]):
            cy, cx = np.argwhere(centres & (labels == k))[0]
            ys, xs = np.nonzero(labels == k)
            offsets[0, ys, xs] = np.arctanh((cy - ys) * cfg.grid_spacing)
            offsets[1, ys, xs] = np.arctanh((cx - xs) * cfg.grid_spacing)
    sigma = np.full((2, h, w), 1.3, np.float32)  # bandwidth exp(13): 0.5 level at ~1.3 px
    seed = np.where(labels > 0, 4.0, -4.0).astype(np.float32)[None]
    return {
        "offsets": torch.from_numpy(offsets)[None],
        "sigma": torch.from_numpy(sigma)[None],
        "seed": torch.from_numpy(seed)[None],
    }


def _targets(labels, known, cfg):
    t = METHOD.make_targets(labels, known, cfg)
    return {k: torch.from_numpy(np.asarray(v))[None] for k, v in t.items()}


def test_perfect_offsets_cost_less_than_none():
    cfg = METHOD.config_type()
    labels = _labels()
    targets = _targets(labels, np.ones(labels.shape, bool), cfg)
    loss = METHOD.make_loss(cfg)
    good = float(loss(_outputs_for(labels, cfg, perfect=True), targets))
    bad = float(loss(_outputs_for(labels, cfg, perfect=False), targets))
    assert good < 0.5 * bad


def test_unknown_pixels_do_not_change_the_loss():
    cfg = METHOD.config_type()
    labels = _labels()
    known = labels == 1  # one annotated object, everything else unknown
    sparse = np.where(known, labels, 0)
    targets = _targets(sparse, known, cfg)
    loss = METHOD.make_loss(cfg)
    out = _outputs_for(labels, cfg, perfect=True)
    base = float(loss(out, targets))
    changed = {k: v.clone() for k, v in out.items()}
    unknown = torch.from_numpy(~known)
    for key in changed:
        changed[key][0][:, unknown] = torch.randn_like(changed[key][0][:, unknown])
    assert float(loss(changed, targets)) == base


def test_decode_gives_embedding_bandwidth_and_seediness():
    cfg = METHOD.config_type()
    labels = _labels()
    out = _outputs_for(labels, cfg, perfect=True)
    raw = {k: v[0].numpy() for k, v in out.items()}
    dec = METHOD.decode(raw, cfg)
    assert dec["embedding"].shape == (2, 32, 32) and dec["bandwidth"].shape == (2, 32, 32)
    centre = np.argwhere(approximate_medoids(labels) & (labels == 2))[0]
    ys, xs = np.nonzero(labels == 2)
    np.testing.assert_allclose(dec["embedding"][0, ys, xs], centre[0] * cfg.grid_spacing, atol=1e-6)
    np.testing.assert_allclose(dec["embedding"][1, ys, xs], centre[1] * cfg.grid_spacing, atol=1e-6)
    assert np.all((dec["seediness"] > 0.5) == (labels > 0))
    np.testing.assert_allclose(dec["bandwidth"], np.exp(13.0), rtol=1e-5)
