"""Tests for napari_instseg.core.train on a tiny synthetic problem (noisy disks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_instseg.core.checkpoint import ModelCard, load_model, load_state, read_card
from napari_instseg.core.data import Sample, sparsify_instances
from napari_instseg.core.jobs import Checkpoint, Metric, Progress, run
from napari_instseg.core.methods import get_method
from napari_instseg.core.train import TrainConfig, TrainResult, _lr_factor, train

METHOD = get_method("threeclass")
CFG = METHOD.config_type(depth=2, width=8)
CARD = ModelCard("disks", "threeclass", {}, "watershed", description="test model")


def _config(**kw):
    base = dict(
        iterations=80,
        batch_size=4,
        patch_size=32,
        lr=5e-3,
        warmup=10,
        val_every=1000,
        log_every=10,
        seed=0,
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def _train(samples, out_dir, config, val=None, events=None, should_stop=None, **kw):
    job = train(METHOD, CFG, samples, val or [], out_dir=out_dir, card=CARD, config=config, **kw)
    return run(job, None if events is None else events.append, should_stop=should_stop)


def _losses(events):
    return [e.value for e in events if isinstance(e, Metric) and e.name == "loss"]


@pytest.mark.slow
def test_loss_goes_down_and_checkpoints_load(tmp_path, disk_samples):
    samples = disk_samples(4)
    events = []
    config = _config(iterations=100, patch_size=64)
    result = _train(samples, tmp_path / "run", config, val=samples[:1], events=events)
    assert isinstance(result, TrainResult)
    assert result.iterations_done == 100 and not result.stopped

    losses = _losses(events)
    assert len(losses) == 10
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:2]), losses

    progress = [e for e in events if isinstance(e, Progress)]
    assert [e.step for e in progress] == list(range(1, 101))
    assert all(e.total == 100 and e.stage == "train" for e in progress)
    val = [e for e in events if isinstance(e, Metric) and e.name == "val_ap50"]
    assert len(val) == 1 and val[0].step == 100 and 0 <= val[0].value <= 1
    assert val[0].value > 0.5  # the disks are easy: most are found after 100 steps
    kinds = [e.kind for e in events if isinstance(e, Checkpoint)]
    assert kinds == ["best", "latest"]

    out = tmp_path / "run"
    for name in ("best.json", "best.safetensors", "latest.json", "latest.safetensors"):
        assert (out / name).is_file(), name
    assert result.best_path == str(out / "best.json")
    assert result.latest_path == str(out / "latest.json")
    assert result.best_metric == val[0].value
    history = json.loads((out / "history.json").read_text())
    assert [h[0] for h in history["loss"]] == list(range(10, 101, 10))

    for kind in ("best", "latest"):
        card, net = load_model(out / f"{kind}.json")
        assert card.name == "disks" and card.method == "threeclass"
        assert card.method_config["width"] == 8 and card.method_config["depth"] == 2
        assert card.metrics["iterations"] == 100
        assert card.training["iterations_done"] == 100
        assert card.training["train_images"] == ["img0", "img1", "img2", "img3"]
        with torch.no_grad():
            out_net = net(torch.from_numpy(samples[0].image)[None])["classes"]
        assert out_net.shape == (1, 3, 64, 64)


def _stop_at(events, step):
    return lambda: any(isinstance(e, Progress) and e.step == step for e in events)


def test_stop_writes_latest_and_resume_continues_to_the_end(tmp_path, disk_samples):
    samples = disk_samples(3)
    config = _config(iterations=40)
    out = tmp_path / "run"
    events = []
    result = _train(samples, out, config, events=events, should_stop=_stop_at(events, 20))
    assert result.stopped and result.iterations_done == 20
    assert result.best_path is None  # no validation happened yet
    assert (out / "latest.json").is_file() and (out / "latest.state.safetensors").is_file()
    assert [e.kind for e in events if isinstance(e, Checkpoint)] == ["latest"]
    assert max(e.step for e in events if isinstance(e, Progress)) == 20
    assert read_card(out / "latest.json").training["iterations_done"] == 20
    state = load_state(out / "latest.state.safetensors")
    assert state["step"] == 20

    events2 = []
    resumed = _train(samples, out, config, events=events2, resume=True)
    assert not resumed.stopped and resumed.iterations_done == 40
    steps = [e.step for e in events2 if isinstance(e, Progress)]
    assert steps == list(range(21, 41))
    assert [h[0] for h in resumed.history["loss"]] == [10, 20, 30, 40]

    # the interrupted run ends where an uninterrupted run ends
    straight = _train(samples, tmp_path / "straight", config)
    assert [h[1] for h in straight.history["loss"]] == pytest.approx(
        [h[1] for h in resumed.history["loss"]], rel=1e-4
    )
    a = load_state(out / "latest.safetensors")
    b = load_state(tmp_path / "straight" / "latest.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_stop_at_the_first_step(tmp_path, disk_samples):
    events = []
    result = _train(
        disk_samples(1), tmp_path, _config(iterations=30), events=events, should_stop=lambda: True
    )
    assert result.stopped and result.iterations_done == 1
    load_model(tmp_path / "latest.json")


def test_resume_without_a_saved_state_starts_from_scratch(tmp_path, disk_samples):
    result = _train(disk_samples(1), tmp_path, _config(iterations=3, log_every=1), resume=True)
    assert result.iterations_done == 3
    assert [h[0] for h in result.history["loss"]] == [1, 2, 3]


def test_sparse_training_runs_and_learns(tmp_path, disk_samples):
    rng = np.random.default_rng(0)
    sparse = []
    for s in disk_samples(4):
        labels, known = sparsify_instances(s.labels, 0.4, rng=rng, background="near")
        assert known.any() and not known.all()
        sparse.append(Sample(s.name, s.image, labels, known))
    events = []
    result = _train(sparse, tmp_path, _config(iterations=60), events=events)
    losses = _losses(events)
    assert result.iterations_done == 60
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    load_model(tmp_path / "latest.json")


def test_init_weights_are_used(tmp_path, disk_samples):
    samples = disk_samples(1)
    first = _train(samples, tmp_path / "a", _config(iterations=2, log_every=1))
    weights = tmp_path / "a" / "latest.safetensors"
    # lr = 0: the convolutions keep the initial weights exactly
    _train(
        samples,
        tmp_path / "b",
        _config(iterations=2, lr=0.0, weight_decay=0.0),
        init_weights=weights,
    )
    a, b = load_state(weights), load_state(tmp_path / "b" / "latest.safetensors")
    conv_keys = [k for k in a if k.endswith(".weight") and a[k].ndim == 4]
    assert conv_keys
    for k in conv_keys:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert first.iterations_done == 2


def test_no_training_samples_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no training samples"):
        _train([], tmp_path, _config())


def test_3d_training_runs(tmp_path):
    method = get_method("threeclass")
    cfg = method.config_type(ndim=3, depth=2, width=4)
    labels = np.zeros((8, 24, 24), np.uint32)
    labels[2:6, 4:10, 4:10] = 1
    labels[2:6, 14:20, 12:20] = 2
    image = (labels > 0).astype(np.float32)[None]
    sample = Sample("cube", image, labels, np.ones(labels.shape, bool))
    config = _config(iterations=4, patch_size=16, batch_size=2, log_every=2)
    job = train(method, cfg, [sample], [sample], out_dir=tmp_path, card=CARD, config=config)
    result = run(job)
    assert result.iterations_done == 4 and result.best_path is not None
    card, _ = load_model(tmp_path / "best.json")
    assert card.ndim == 3


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(iterations=110, warmup=10)
    assert _lr_factor(0, cfg) == pytest.approx(0.1)
    assert _lr_factor(9, cfg) == pytest.approx(1.0)
    assert _lr_factor(10, cfg) == pytest.approx(1.0)
    assert _lr_factor(60, cfg) == pytest.approx(0.5)
    assert _lr_factor(110, cfg) == pytest.approx(0.0, abs=1e-12)


def test_without_validation_only_latest_is_written(tmp_path, disk_samples):
    result = _train(disk_samples(2), tmp_path, _config(iterations=12, val_every=6))
    assert result.best_path is None
    assert (tmp_path / "latest.json").exists() and not (tmp_path / "best.json").exists()
    assert "val_ap50" not in read_card(tmp_path / "latest.json").metrics


def test_anchor_term_counts_only_unknown_pixels_and_shared_heads():
    import torch

    from napari_instseg.core.train import anchor_term

    ref = {"embedding": torch.zeros(1, 2, 4, 4), "foreground": torch.zeros(1, 1, 4, 4)}
    known = torch.zeros(1, 4, 4, dtype=torch.bool)
    known[:, :2] = True
    out = {k: v.clone() for k, v in ref.items()}
    out["embedding_g"] = torch.ones(1, 2, 4, 4)  # not in the reference: ignored
    assert float(anchor_term(out, ref, known)) == 0.0
    out["embedding"][:, :, :2] = 5.0  # differs on known pixels only: free to change
    assert float(anchor_term(out, ref, known)) == 0.0
    out["embedding"][:, 0, 3, 3] = 0.5  # unknown pixel: Huber 0.5 * 0.5**2
    expected = 0.125 / (8 * 2) / 2  # mean over 8 unknown px, 2 channels, then 2 heads
    assert abs(float(anchor_term(out, ref, known)) - expected) < 1e-7


@pytest.mark.parametrize("part", ["first_block", "encoder"])
def test_only_the_chosen_part_of_the_network_moves(tmp_path, disk_samples, part):
    """trainable: the other weights keep their initial values exactly, the chosen ones move."""
    from napari_instseg.core.train import TRAINABLE

    samples = disk_samples(1)
    _train(samples, tmp_path / "a", _config(iterations=2, log_every=1))
    start = load_state(tmp_path / "a" / "latest.safetensors")
    _train(
        samples,
        tmp_path / "b",
        _config(iterations=3, log_every=1, trainable=part),
        init_weights=tmp_path / "a" / "latest.safetensors",
    )
    end = load_state(tmp_path / "b" / "latest.safetensors")
    params = [k for k in start if k.endswith((".weight", ".bias"))]  # not the norm statistics
    moved = {k for k in params if not torch.equal(start[k], end[k])}
    chosen = {k for k in params if any(f".{p}" in f".{k}" for p in TRAINABLE[part])}
    assert moved and moved <= chosen
    assert all(torch.equal(start[k], end[k]) for k in params if k not in chosen)
