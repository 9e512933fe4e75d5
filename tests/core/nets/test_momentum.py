"""The momentum twin: g follows f as a moving average in training only, never by gradient."""

from __future__ import annotations

import torch

from napari_instseg.core.nets import MomentumPair, UNetConfig, build_unet
from napari_instseg.core.nets.momentum import EVAL_VIEW, blur, perturb


def _pair(m=0.9):
    torch.manual_seed(0)
    f = build_unet(UNetConfig(2, 1, 2, 4, (("emb", 3), ("fg", 1))))
    return MomentumPair(f, m, g_heads=("emb",))


def test_outputs_and_no_gradient_into_g():
    pair = _pair().train()
    out = pair(torch.randn(2, 1, 16, 16))
    assert set(out) == {"emb", "fg", "emb_g"}
    assert not out["emb_g"].requires_grad
    assert all(not p.requires_grad for p in pair.g.parameters())
    out["emb"].sum().backward()
    assert all(p.grad is None for p in pair.g.parameters())


def test_g_is_the_moving_average_in_training_only():
    pair = _pair(m=0.9)
    with torch.no_grad():
        for p in pair.f.parameters():
            p.add_(1.0)  # f moves away from g
    before = [p.clone() for p in pair.g.parameters()]
    f_now = [p.clone() for p in pair.f.parameters()]
    pair.eval()(torch.randn(1, 1, 16, 16))
    for a, b in zip(before, pair.g.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # evaluation never updates g
    pair.train()(torch.randn(2, 1, 16, 16))
    for g0, f0, g1 in zip(before, f_now, pair.g.parameters(), strict=True):
        torch.testing.assert_close(g1, 0.9 * g0 + 0.1 * f0)


def test_state_dict_holds_both_networks():
    keys = _pair().state_dict().keys()
    assert any(k.startswith("f.") for k in keys) and any(k.startswith("g.") for k in keys)


def test_views():
    x = torch.rand(3, 1, 20, 20)
    torch.manual_seed(0)
    a = perturb(x, training=True)
    torch.manual_seed(0)
    b = perturb(x, training=True)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, x)
    fixed = perturb(x, training=False)
    torch.testing.assert_close(fixed, perturb(x, training=False))
    contrast, brightness, sigma = EVAL_VIEW
    torch.testing.assert_close(fixed, blur(x * contrast + brightness, sigma))
    # blur keeps a constant image constant (borders included) and works in 3D
    torch.testing.assert_close(blur(torch.ones(1, 2, 5, 6), 2.0), torch.ones(1, 2, 5, 6))
    torch.testing.assert_close(blur(torch.ones(1, 1, 4, 5, 6), 1.0), torch.ones(1, 1, 4, 5, 6))
