"""Replay sets: dense crops of a parent's training data mixed into fine-tuning batches."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.data.datasets import Sample


def test_replay_crops_are_dense_renumbered_and_padded(disks):
    from napari_instseg.core.replay import make_replay_crops

    big, small = disks(0, (96, 96)), disks(1, (40, 40))
    images = [(lab > 0)[None].astype(np.float32) for lab in (big, small)]
    x, y = make_replay_crops(images, [big, small], size=64, rng=np.random.default_rng(0))
    assert x.shape == (2, 1, 64, 64) and x.dtype == np.float16
    assert y.shape == (2, 64, 64)
    for labels, image in zip(y, x, strict=True):
        ids = np.unique(labels[labels > 0])
        assert ids.size and np.array_equal(ids, np.arange(1, ids.size + 1))
        assert np.array_equal(labels > 0, image[0] > 0.5)  # image and labels cut together
    assert (y[1, 40:, :] == 0).all() and (x[1, 0, 40:, :] == 0).all()  # padding: background


def test_replay_set_round_trip_and_lookup_by_training_data(disks, tmp_path, monkeypatch):
    from napari_instseg.core import replay

    monkeypatch.setattr(replay, "replay_dir", lambda: tmp_path)
    labels = disks(0, (64, 64))
    x, y = replay.make_replay_crops(
        [(labels > 0)[None].astype(np.float32)], [labels], size=48, rng=np.random.default_rng(0)
    )
    replay.save_replay_set(replay.replay_path("mydata"), x, y, data="mydata")
    assert not list(tmp_path.glob("*.tmp*"))  # staged and moved into place
    loaded = replay.load_replay_set(tmp_path / "mydata.safetensors")
    assert len(loaded) == 1 and loaded[0].known.all()
    assert loaded[0].image.dtype == np.float32
    np.testing.assert_array_equal(loaded[0].labels, y[0])

    class Card:
        ndim, in_channels = 2, 1
        training = {"data": "mydata"}

    assert len(replay.replay_for(Card)) == 1
    Card.training = {"data": "sparse annotations", "parent_data": "mydata"}  # a fine-tuned one
    assert len(replay.replay_for(Card)) == 1
    Card.training = {"data": "mydata+unknown"}  # trained on several data sets
    assert len(replay.replay_for(Card)) == 1
    Card.in_channels = 3  # does not fit the network
    assert replay.replay_for(Card) == []
    Card.training = {"data": "other"}
    assert replay.replay_for(Card) == []


def test_the_shipped_fluorescence_replay_set_fits_the_nuclei_models():
    from napari_instseg.core.pipeline import load_model
    from napari_instseg.core.replay import replay_for

    for name in ("embedseg-nuclei", "spoco-nuclei", "generalist-nuclei"):
        samples = replay_for(load_model(name).card)
        assert len(samples) >= 16, name
        s = samples[0]
        assert s.image.shape == (1, 128, 128) and s.known.all() and s.labels.max() > 0
        # normalised as the models saw DSB images: percentiles 1-99.8 map to about 0-1
        values = np.concatenate([x.image.ravel() for x in samples])
        assert -0.5 < np.percentile(values, 1) < 0.2 < np.percentile(values, 99) < 1.5


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_batches_draw_crops_from_the_replay_set_by_share(share):
    from napari_instseg.core.data.augment import AugmentConfig
    from napari_instseg.core.methods import get_method
    from napari_instseg.core.train import TrainConfig, _make_batch

    method = get_method("spoco")
    cfg = method.config_type()
    sparse_known = np.zeros((48, 48), bool)
    sparse_known[:24] = True
    labels = np.zeros((48, 48), np.int32)
    labels[5:15, 5:15] = 1
    user = [Sample("user", np.zeros((1, 48, 48), np.float32), labels, sparse_known)]
    dense = [Sample("replay", np.ones((1, 48, 48), np.float32), labels, np.ones((48, 48), bool))]
    config = TrainConfig(batch_size=8, patch_size=48, replay_share=share)
    x, _, known = _make_batch(
        method, cfg, user, config, np.random.default_rng(0), AugmentConfig(flips=False), dense
    )
    from_replay = known.numpy().reshape(8, -1).all(axis=1)
    assert from_replay.all() if share == 1.0 else not from_replay.any()


def test_finetune_mixes_in_the_parents_replay_set(save_tiny_spoco, disks, tmp_path, monkeypatch):
    from napari_instseg.core import replay
    from napari_instseg.core.checkpoint import load_model, read_card
    from napari_instseg.core.data.sparse import BACKGROUND_LABEL
    from napari_instseg.core.finetune import AnnotatedImage, FinetuneConfig, finetune
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import Model

    monkeypatch.setattr(replay, "replay_dir", lambda: tmp_path / "replay")
    truth = disks(3, (64, 64))
    x, y = replay.make_replay_crops(
        [(truth > 0)[None].astype(np.float32)], [truth], size=32, rng=np.random.default_rng(0)
    )
    replay.save_replay_set(replay.replay_path("tinydata"), x, y)
    path = save_tiny_spoco(tmp_path / "zoo", training={"data": "tinydata"})
    parent = Model.from_card(*load_model(path))
    labels = disks(0, (64, 64))
    annotation = np.where(np.isin(labels, [1, 2, 3]), labels, 0).astype(np.uint32)
    annotation[:4, :4] = BACKGROUND_LABEL
    image = (labels > 0).astype(np.float32)
    config = FinetuneConfig(
        iterations=3, batch_size=2, patch_size=32, val_every=3, compare_parent=False, device="cpu"
    )
    for share, expected in ((0.5, 1), (0.0, None)):
        result = run(
            finetune(
                parent,
                [AnnotatedImage("a", image, annotation)],
                name=f"tuned-{share}",
                run_dir=tmp_path / f"run{share}",
                models_dir=tmp_path / "models",
                config=FinetuneConfig(**{**config.__dict__, "replay": share}),
            )
        )
        card = read_card(result.model_path)
        assert card.training.get("replay_crops") == expected
        assert card.training["finetune_config"]["replay"] == share
