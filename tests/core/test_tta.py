"""Test-time augmentation averages outputs in the image's own frame.

An equivariant stand-in network makes the check exact: its outputs are a displacement field
towards the brightest pixel ('vector'), the absolute intensity gradient per axis ('axes')
and the image itself ('scalar'). Each commutes with flips and quarter turns when the channels
are transformed correctly, so TTA must give exactly the plain prediction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_instseg.core.jobs import run
from napari_instseg.core.predict import PredictConfig, predict_tiled, tta_transforms

KINDS = {"v": "vector", "a": "axes", "s": "scalar"}


class Equivariant(torch.nn.Module):
    def forward(self, x):
        spatial = x.shape[2:]
        nd = len(spatial)
        coords = torch.stack(
            torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in spatial], indexing="ij")
        )
        vectors = []
        for b in range(x.shape[0]):
            peak = np.unravel_index(int(x[b, 0].argmax()), spatial)
            vectors.append(torch.tensor(peak, dtype=torch.float32).reshape(nd, *[1] * nd) - coords)
        grads = [torch.gradient(x[:, 0], dim=1 + d)[0].abs() for d in range(nd)]
        return {"v": torch.stack(vectors), "a": torch.stack(grads, 1), "s": x}


class NotEquivariant(Equivariant):
    def forward(self, x):
        out = super().forward(x)
        out["v"] = out["v"] + 1.0  # a constant drift does not turn with the image
        return out


@pytest.mark.parametrize("shape", [(40, 56), (12, 24, 32)])
def test_tta_reproduces_an_equivariant_network_exactly(shape):
    image = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    plain = run(
        predict_tiled(
            Equivariant(),
            image,
            config=PredictConfig(tile_size=64, halo=0),
            multiple=1,
            head_kinds=KINDS,
        )
    )
    tta = run(
        predict_tiled(
            Equivariant(),
            image,
            config=PredictConfig(tile_size=64, halo=0, tta=True),
            multiple=1,
            head_kinds=KINDS,
        )
    )
    for name in KINDS:
        np.testing.assert_allclose(tta[name], plain[name], atol=1e-5)


def test_tta_averages_away_what_does_not_turn():
    image = np.random.default_rng(1).random((1, 32, 32)).astype(np.float32)
    config = PredictConfig(tile_size=32, halo=0, tta=True)
    tta = run(predict_tiled(NotEquivariant(), image, config=config, multiple=1, head_kinds=KINDS))
    plain = run(
        predict_tiled(
            Equivariant(),
            image,
            config=PredictConfig(tile_size=32, halo=0),
            multiple=1,
            head_kinds=KINDS,
        )
    )
    # The drift (+1, +1) averages to zero over the 8 transforms of the dihedral group.
    np.testing.assert_allclose(tta["v"], plain["v"], atol=1e-5)


def test_transform_counts_and_refusal_without_head_kinds():
    assert len(tta_transforms(2)) == 8 and len(tta_transforms(3)) == 16
    image = np.zeros((1, 16, 16), np.float32)
    with pytest.raises(ValueError, match="test-time augmentation"):
        run(predict_tiled(Equivariant(), image, config=PredictConfig(tta=True), multiple=1))
