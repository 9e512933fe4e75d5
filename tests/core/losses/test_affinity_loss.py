"""Embedding affinities at offsets and their class-balanced loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_instseg.core.losses.affinity import (
    affinities_numpy,
    affinity_loss,
    balanced_mse,
    offsets_from_shifts,
    pair_slices,
)


def test_offsets_from_shifts_put_the_nearest_neighbours_first():
    assert offsets_from_shifts((1, 3), 2) == [(-1, 0), (0, -1), (-3, 0), (0, -3)]
    assert offsets_from_shifts((1,), 3) == [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]


@pytest.mark.parametrize("offset", [(-3, 0), (0, 2), (4, -1), (-7, 7), (9, 0)])
def test_pair_slices_pair_each_pixel_with_its_partner(offset):
    shape = (8, 9)
    grid = np.indices(shape)
    src, dst = pair_slices(offset, shape)
    for axis in range(2):
        np.testing.assert_array_equal(grid[axis][dst] - grid[axis][src], offset[axis])
    expected = max(0, 8 - abs(offset[0])) * max(0, 9 - abs(offset[1]))
    assert grid[0][src].size == expected


def test_affinities_are_cosine_similarity_clipped_at_zero():
    emb = np.zeros((2, 3, 4), np.float32)
    emb[0] = 2.0
    emb[:, :, 2:] = [[[0.0]], [[5.0]]]  # right half orthogonal to the left
    emb[0, 2, :] = -1.0  # last row opposite in part
    emb[1, 2, :] = 0.0
    a = affinities_numpy(emb, [(0, -1), (-1, 0)])
    assert a.shape == (2, 3, 4) and a.min() >= 0 and a.max() <= 1
    np.testing.assert_allclose(a[0, 0], [0, 1, 0, 1], atol=1e-6)  # x=0 has no partner
    np.testing.assert_allclose(a[1, 0], 0)  # first row has no partner above
    np.testing.assert_allclose(a[1, 2, :2], 0)  # opposite vectors: clipped


def test_balanced_mse_up_weights_the_rare_class():
    target = torch.tensor([1.0] + [0.0] * 9)
    valid = torch.ones(10, dtype=torch.bool)
    miss_rare = balanced_mse(torch.zeros(10), target, valid)  # the one positive wrong
    miss_common = balanced_mse(torch.tensor([1.0] * 2 + [0.0] * 8), target, valid)
    assert miss_rare.item() == pytest.approx(9.0 / 10)  # weight 0.9 / 0.1
    assert miss_common.item() == pytest.approx(1.0 / 10)
    constant = balanced_mse(torch.zeros(10), torch.ones(10), valid)
    assert constant.item() == pytest.approx(1.0)
    assert balanced_mse(torch.zeros(3), torch.ones(3), torch.zeros(3, dtype=bool)).item() == 0


def _labels():
    lab = np.zeros((16, 16), np.int64)
    lab[2:7, 2:7] = 1
    lab[8:14, 5:12] = 2
    return torch.from_numpy(lab)[None]


def test_perfect_embedding_has_zero_loss_and_a_random_one_does_not():
    lab = _labels()
    known = torch.ones_like(lab, dtype=torch.bool)
    emb = torch.nn.functional.one_hot(lab, 3).permute(0, 3, 1, 2).float()
    offsets = offsets_from_shifts((1, 3, 9), 2)
    assert affinity_loss(emb, lab, known, offsets).item() == pytest.approx(0.0, abs=1e-6)
    noisy = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert affinity_loss(noisy, lab, known, offsets).item() > 0.1


def test_pairs_with_an_unknown_end_are_ignored():
    lab = _labels()
    known = lab == 1
    known[:, :, 14:] = True  # painted background strip
    offsets = offsets_from_shifts((1, 3), 2)
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(1, 4, 16, 16, generator=g, requires_grad=True)
    affinity_loss(emb, lab, known, offsets).backward()
    # pixels far (> 3 px) from any known pixel get no gradient
    far = np.ones((16, 16), bool)
    for y, x in zip(*np.nonzero(known[0].numpy()), strict=True):
        far[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4] = False
    assert far.any()
    assert emb.grad[0][:, torch.from_numpy(far)].abs().max() == 0
    assert emb.grad[0][:, known[0]].abs().max() > 0


def test_cross_view_term_compares_the_two_views():
    lab = _labels()
    known = torch.ones_like(lab, dtype=torch.bool)
    offsets = offsets_from_shifts((1, 3), 2)
    emb = torch.nn.functional.one_hot(lab, 3).permute(0, 3, 1, 2).float()
    same = affinity_loss(emb, lab, known, offsets, other=emb.clone())
    other = affinity_loss(emb, lab, known, offsets, other=emb.roll(1, dims=1))
    assert same.item() == pytest.approx(0.0, abs=1e-6) and other.item() > 0.1
