"""SPOCO targets, loss weights and decoding."""

from __future__ import annotations

import numpy as np
import torch

from napari_instseg.core.methods import get_method

METHOD = get_method("spoco")


def _cfg(**kw):
    return METHOD.config_type(depth=2, width=4, embedding_dim=4, **kw)


def _batch():
    labels = np.zeros((24, 24), np.uint32)
    labels[2:8, 2:8] = 1
    labels[12:20, 10:18] = 2
    known = labels == 1
    known[:, 20:] = True  # painted background
    t = METHOD.make_targets(labels, known, _cfg())
    return {k: torch.from_numpy(v[None]) for k, v in t.items()}


def test_targets_keep_only_known_objects():
    t = _batch()
    inst = t["instances"][0].numpy()
    assert set(np.unique(inst)) == {0, 1}  # object 2 is not annotated
    assert t["known"][0, 0, 22] and not t["known"][0, 14, 14]


def _outputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "embedding": torch.randn(1, 4, 24, 24, generator=g),
        "foreground": torch.randn(1, 1, 24, 24, generator=g),
        "embedding_g": torch.randn(1, 4, 24, 24, generator=g),
    }


def _loss(**kw):
    torch.manual_seed(0)  # consistency anchors
    return METHOD.make_loss(_cfg(**kw))(_outputs(), _batch()).item()


def test_unlabelled_push_and_consistency_weights_are_applied():
    base = _loss()
    assert _loss(w_unlabelled_push=0.0) < base
    assert _loss(w_consistency=0.0) < base
    assert _loss(w_consistency=2.0) > base


def test_foreground_loss_sees_known_pixels_only():
    out = _outputs()
    loss_fn = METHOD.make_loss(_cfg(w_consistency=0.0))
    torch.manual_seed(0)
    a = loss_fn(out, _batch()).item()
    out["foreground"][0, 0, 14, 14] += 50.0  # an unknown pixel
    torch.manual_seed(0)
    assert loss_fn(out, _batch()).item() == a
    out["foreground"][0, 0, 3, 3] -= 50.0  # an annotated one
    assert loss_fn(out, _batch()).item() > a


def test_decode():
    raw = {k: v[0].numpy() for k, v in _outputs().items()}
    dec = METHOD.decode(raw, _cfg())
    assert dec["pixel_embedding"].shape == (4, 24, 24)
    assert dec["pixel_embedding_g"].shape == (4, 24, 24)
    assert dec["foreground"].shape == (24, 24)
    assert 0 <= dec["foreground"].min() and dec["foreground"].max() <= 1
