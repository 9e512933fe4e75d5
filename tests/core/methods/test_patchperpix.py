"""PatchPerPix method: targets agree with the assembly's patch layout, both variants decode."""

import numpy as np
import pytest
import torch

from napari_instseg.core.assembly.patches import patch_offsets, patches_from_labels
from napari_instseg.core.jobs import run
from napari_instseg.core.methods import get_method
from napari_instseg.core.methods.patchperpix import (
    DECODER_KEYS,
    PatchPerPixConfig,
    patch_targets,
    sample_centres,
)
from napari_instseg.core.predict import PredictConfig, predict_tiled

METHOD = get_method("patchperpix")


def _labels():
    labels = np.zeros((20, 24), np.int64)
    labels[2:9, 3:12] = 1
    labels[9:15, 5:14] = 2  # touches object 1
    labels[12:18, 16:22] = 3
    return labels


def test_training_targets_match_the_patches_the_backend_reads():
    labels = _labels()
    shape = (7, 7)
    offsets = torch.from_numpy(patch_offsets(shape))
    inst = torch.from_numpy(labels)[None]
    known = torch.ones_like(inst, dtype=torch.bool)
    centres = sample_centres(inst, 10_000)
    target, valid = patch_targets(inst, known, centres, offsets)
    pixels = np.ravel_multi_index(tuple(centres[:, 1:].numpy().T), labels.shape)
    expected = patches_from_labels(labels, shape, pixels) == 255
    np.testing.assert_array_equal(target.numpy().astype(bool) & valid.numpy(), expected)
    # every element inside the image counts when everything is known
    coords = centres[:, None, 1:].numpy() + patch_offsets(shape)[None]
    inside = np.all((coords >= 0) & (coords < labels.shape), axis=-1)
    np.testing.assert_array_equal(valid.numpy(), inside)


def test_unknown_partner_pixels_do_not_count():
    labels = _labels()
    known = np.zeros(labels.shape, bool)
    known[labels == 1] = True  # only object 1 is annotated
    inst = torch.from_numpy(np.where(known, labels, 0))[None]
    centres = sample_centres(inst, 10_000)
    assert len(centres) == (labels == 1).sum()  # centres come from annotated objects only
    offsets = torch.from_numpy(patch_offsets((5, 5)))
    _, valid = patch_targets(inst, torch.from_numpy(known)[None], centres, offsets)
    pos = centres[:, None, 1:].numpy() + patch_offsets((5, 5))[None]
    pos = np.clip(pos, 0, np.array(labels.shape) - 1)
    assert not np.any(valid.numpy() & ~known[pos[..., 0], pos[..., 1]])


def test_sampling_is_capped_per_image():
    inst = torch.from_numpy(np.stack([_labels(), _labels()]))
    centres = sample_centres(inst, 17)
    assert len(centres) == 34
    assert set(centres[:, 0].tolist()) == {0, 1}
    assert (inst[tuple(centres.T)] > 0).all()


@pytest.mark.parametrize("code_units", [8, 0])
def test_both_variants_train_and_decode_from_a_tiled_prediction(code_units):
    cfg = PatchPerPixConfig(depth=2, width=4, patch_size=5, code_units=code_units)
    torch.manual_seed(0)
    net = METHOD.build_net(cfg)
    head = dict(METHOD.heads(cfg))
    assert ("code" in head) == bool(code_units) and ("patch" in head) != bool(code_units)
    labels = _labels()
    targets = METHOD.make_targets(labels, np.ones(labels.shape, bool), cfg)
    batch = {k: torch.from_numpy(v)[None] for k, v in targets.items()}
    x = torch.from_numpy((labels > 0).astype(np.float32))[None, None]
    loss_fn = METHOD.make_loss(cfg)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    net.train()
    first = None
    for _ in range(60):
        out = net(x)
        if code_units:  # the loss reaches the decoder through the outputs
            assert set(DECODER_KEYS) <= set(out)
        loss = loss_fn(out, batch)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first
    raw = run(
        predict_tiled(net, x[0].numpy(), config=PredictConfig(tile_size=16, halo=4), multiple=2)
    )
    assert (set(DECODER_KEYS) <= set(raw)) == bool(code_units)
    decoded = METHOD.decode(raw, cfg)
    fg = decoded["foreground"]
    np.testing.assert_array_equal(decoded["patch_pixels"], np.flatnonzero(fg >= cfg.decode_min_fg))
    assert decoded["patches"].shape == (decoded["patch_pixels"].size, 25)
    assert decoded["patches"].dtype == np.uint8
    np.testing.assert_array_equal(decoded["patch_shape"], [5, 5])


def test_decoding_a_prediction_without_the_decoder_says_so():
    cfg = PatchPerPixConfig(depth=2, width=4, patch_size=5, code_units=8)
    raw = {"code": np.zeros((8, 4, 4), np.float32), "foreground": np.ones((1, 4, 4), np.float32)}
    with pytest.raises(ValueError, match="decoder"):
        METHOD.decode(raw, cfg)


@pytest.mark.parametrize("size", [4, 1])
def test_patch_size_must_be_odd_and_at_least_three(size):
    with pytest.raises(ValueError, match="odd"):
        METHOD.build_net(PatchPerPixConfig(patch_size=size))
