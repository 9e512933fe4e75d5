"""Tests for napari_instseg.core.zoo: model folders, listing and lookup by name or path."""

from __future__ import annotations

import json
import os

import pytest
import torch

from napari_instseg.core.checkpoint import CheckpointError, ModelCard, save_model
from napari_instseg.core.configs import config_to_dict
from napari_instseg.core.methods import get_method
from napari_instseg.core.zoo import find_model, list_models, model_dirs, user_model_dir, zoo_dir


def _save(directory, name, width=4):
    method = get_method("threeclass")
    cfg = method.config_type(depth=2, width=width)
    torch.manual_seed(width)
    net = method.build_net(cfg)
    card = ModelCard(name, "threeclass", config_to_dict(cfg), "watershed")
    return save_model(directory, name, net, card)


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    _save(a, "alpha")
    _save(a, "beta-v1.2")
    _save(b, "gamma", width=5)
    # foreign files that must be skipped
    (a / "settings.json").write_text(json.dumps({"theme": "dark"}))
    (a / "lonely.json").write_text(json.dumps({"name": "lonely"}))  # no weights next to it
    (b / "notacard.json").write_text("[1, 2, 3]")
    (b / "notacard.safetensors").write_bytes(b"")
    (b / "broken.json").write_text("{oops")
    (b / "broken.safetensors").write_bytes(b"")
    monkeypatch.setenv("NAPARI_INSTSEG_MODEL_DIRS", os.pathsep.join([str(a), str(b)]))
    return a, b


def test_model_dirs_read_the_environment(user_dirs, tmp_path):
    a, b = user_dirs
    dirs = model_dirs([tmp_path / "extra"])
    assert dirs == [zoo_dir(), user_model_dir(), a, b, tmp_path / "extra"]


def test_list_models_finds_user_models_and_skips_foreign_json(user_dirs):
    a, b = user_dirs
    found = {card.name: path for card, path in list_models()}
    assert {"alpha", "beta-v1.2", "gamma"} <= set(found)
    assert not {"settings", "lonely", "notacard", "broken"} & set(found)
    assert found["alpha"] == a / "alpha.json"
    assert found["gamma"] == b / "gamma.json"
    names = [card.name for card, _ in list_models()]
    assert names == sorted(names)


def test_first_folder_wins_for_a_duplicate_name(user_dirs):
    a, b = user_dirs
    _save(b, "alpha", width=6)
    found = {card.name: (card, path) for card, path in list_models()}
    assert found["alpha"][1] == a / "alpha.json"
    assert found["alpha"][0].method_config["width"] == 4


def test_list_models_with_no_user_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_INSTSEG_MODEL_DIRS", str(tmp_path / "missing"))
    for _, path in list_models():
        assert path.parent == zoo_dir()  # only shipped models, if any


@pytest.mark.parametrize("name", ["alpha", "gamma", "beta-v1.2"])
def test_find_model_by_name(user_dirs, name):
    card, net = find_model(name)
    assert card.name == name
    assert not net.training
    assert net.encoders[0][0].out_channels == (5 if name == "gamma" else 4)


@pytest.mark.parametrize("form", ["json", "safetensors", "stem"])
def test_find_model_by_path(tmp_path, form):
    card_path = _save(tmp_path / "m", "delta-v0.3")
    stem = tmp_path / "m" / "delta-v0.3"
    path = {"json": card_path, "safetensors": tmp_path / "m" / "delta-v0.3.safetensors"}
    card, _ = find_model(path.get(form, stem))
    assert card.name == "delta-v0.3"
    card, _ = find_model(str(path.get(form, stem)))
    assert card.name == "delta-v0.3"


def test_unknown_name_lists_the_available_ones(user_dirs):
    with pytest.raises(CheckpointError, match="no model called 'omega'") as info:
        find_model("omega")
    message = str(info.value)
    assert "alpha" in message and "gamma" in message and "beta-v1.2" in message


def test_extra_dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("NAPARI_INSTSEG_MODEL_DIRS", raising=False)
    _save(tmp_path / "x", "epsilon")
    with pytest.raises(CheckpointError):
        find_model("epsilon")
    card, _ = find_model("epsilon", extra_dirs=[tmp_path / "x"])
    assert card.name == "epsilon"


def test_pickle_path_is_refused(tmp_path):
    pt = tmp_path / "weights.pth"
    torch.save({"a": torch.zeros(2)}, pt)
    with pytest.raises(CheckpointError, match="pickle"):
        find_model(pt)
