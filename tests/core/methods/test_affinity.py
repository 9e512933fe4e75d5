"""Pixel-embedded affinity: network views, loss weights and decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_instseg.core.methods import get_method

METHOD = get_method("affinity")


def _cfg(**kw):
    return METHOD.config_type(depth=2, width=4, embedding_dim=4, **kw)


def _targets():
    labels = np.zeros((24, 24), np.uint32)
    labels[2:8, 2:8] = 1
    labels[12:20, 10:18] = 2
    known = labels == 1
    known[:, 20:] = True  # painted background
    t = METHOD.make_targets(labels, known, _cfg())
    return {k: torch.from_numpy(v[None]) for k, v in t.items()}


def _outputs(seed=0, view=True):
    g = torch.Generator().manual_seed(seed)
    out = {
        "embedding": torch.randn(1, 4, 24, 24, generator=g),
        "foreground": torch.randn(1, 1, 24, 24, generator=g),
    }
    if view:
        out["embedding_view"] = torch.randn(1, 4, 24, 24, generator=g)
    return out


def test_targets_keep_only_known_objects():
    t = _targets()
    assert set(np.unique(t["instances"][0].numpy())) == {0, 1}
    assert t["known"][0, 0, 22] and not t["known"][0, 14, 14]


def _loss(**kw):
    return METHOD.make_loss(_cfg(**kw))(_outputs(), _targets()).item()


def test_each_loss_weight_is_applied():
    base = _loss()
    assert _loss(w_cross_view=0.0) < base
    assert _loss(w_foreground=0.0) < base
    assert _loss(w_affinity=2.0) > base


def test_two_views_only_while_training():
    torch.manual_seed(0)
    net = METHOD.build_net(_cfg())
    x = torch.randn(2, 1, 16, 16)
    net.train()
    out = net(x)
    assert set(out) == {"embedding", "foreground", "embedding_view"}
    assert out["embedding_view"].shape == out["embedding"].shape == (2, 4, 16, 16)
    assert not torch.allclose(out["embedding_view"], out["embedding"])
    net.eval()
    assert set(net(x)) == {"embedding", "foreground"}
    plain = METHOD.build_net(_cfg(w_cross_view=0.0)).train()
    assert set(plain(x)) == {"embedding", "foreground"}


def test_first_shift_must_be_one():
    with pytest.raises(ValueError, match="first shift"):
        METHOD.build_net(_cfg(shifts=(3, 9)))


@pytest.mark.parametrize("ndim", [2, 3])
def test_decode_gives_affinities_at_the_config_offsets(ndim):
    cfg = METHOD.config_type(ndim=ndim, shifts=(1, 2))
    spatial = (6, 7) if ndim == 2 else (4, 5, 6)
    emb = np.zeros((3, *spatial), np.float32)
    emb[0] = 1.0
    emb[1][..., 4:] = 3.0  # x >= 4: a different direction
    raw = {"embedding": emb, "foreground": np.zeros((1, *spatial), np.float32)}
    out = METHOD.decode(raw, cfg)
    assert out["affinity_offsets"].shape == (2 * ndim, ndim)
    np.testing.assert_array_equal(out["affinity_offsets"][ndim - 1], [0] * (ndim - 1) + [-1])
    aff = out["affinities"]
    assert aff.shape == (2 * ndim, *spatial) and aff.dtype == np.float32
    x_nn = aff[ndim - 1]  # pixel with its left neighbour
    assert np.allclose(x_nn[..., 1:4], 1) and np.allclose(x_nn[..., 5:], 1)
    assert np.all(x_nn[..., 4] < 0.5)  # the step between the two directions
    np.testing.assert_allclose(out["foreground"], 0.5)
    norms = np.sqrt((out["pixel_embedding"] ** 2).sum(0))
    np.testing.assert_allclose(norms, 1, rtol=1e-5)
