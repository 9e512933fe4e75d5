"""Live tuning from a cached prediction, and the CLI command that reproduces it."""

from __future__ import annotations

import shlex

import numpy as np

from napari_instseg.core.jobs import run
from napari_instseg.core.pipeline import load_model, predict_image
from napari_instseg.core.tuning import Tuner, cli_command


def test_tuner_reassembles_without_the_network(tiny_model, monkeypatch):
    card_path, _ = tiny_model
    model = load_model(str(card_path))
    image = np.random.default_rng(0).random((48, 40)).astype(np.float32)
    prediction = run(predict_image(model, image))
    tuner = Tuner(model, prediction)

    def no_network(*_args, **_kwargs):
        raise AssertionError("tuning must not run the network")

    monkeypatch.setattr(model.net, "forward", no_network)
    first = tuner.assemble("watershed")
    assert first.knobs["min_size"] == 3  # the card's default for its own back-end
    loose = tuner.assemble("watershed", {"fg_threshold": 0.0, "seed_threshold": 0.0, "min_size": 0})
    assert loose.labels.shape == (48, 40) and loose.labels.dtype == np.uint32
    assert loose.n_objects == int(loose.labels.max()) and loose.seconds >= 0
    assert tuner.assemble("components", {"threshold": 1.0}).n_objects == 0
    assert tuner.defaults("components")["threshold"] == 0.5


def test_cli_command_lists_only_changed_knobs_and_quotes_paths():
    command = cli_command(
        "m", "watershed", {"a": 1, "b": 0.7}, {"a": 1, "b": 0.5}, image="my image.tif"
    )
    parts = shlex.split(command)
    assert parts[:5] == ["napari-instseg", "segment", "my image.tif", "--model", "m"]
    assert parts.count("--set") == 1 and "b=0.7" in parts
    assert parts[-2:] == ["--output", "labels/"]


def test_cli_command_adds_diameter_and_appearance_when_not_auto():
    plain = shlex.split(cli_command("m", "watershed", {}, {}))
    assert "--diameter" not in plain and "--appearance" not in plain
    parts = shlex.split(cli_command("m", "watershed", {}, {}, diameter=24.5, appearance="stain"))
    assert parts[parts.index("--diameter") + 1] == "24.5"
    assert parts[parts.index("--appearance") + 1] == "stain"
    parts = shlex.split(cli_command("m", "watershed", {}, {}, diameter="off"))
    assert parts[parts.index("--diameter") + 1] == "off"
