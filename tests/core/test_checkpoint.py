"""Tests for napari_instseg.core.checkpoint: safetensors + JSON cards, never unpickling."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_instseg.core.checkpoint import (
    CheckpointError,
    ModelCard,
    load_model,
    load_state,
    read_card,
    resolve_model_files,
    save_model,
    save_state,
    sha256_file,
)
from napari_instseg.core.configs import config_to_dict
from napari_instseg.core.methods import get_method


def _outputs(net, x):
    with torch.no_grad():
        return net.eval()(x)


def _card(name="m", **cfg):
    method = get_method("threeclass")
    config = method.config_type(**{"depth": 2, "width": 4, **cfg})
    return ModelCard(name, "threeclass", config_to_dict(config), "watershed"), method, config


def test_save_load_round_trip_gives_identical_outputs(tiny_model):
    card_path, net = tiny_model
    assert card_path.name == "tiny.json"
    assert (card_path.parent / "tiny.safetensors").is_file()
    card, loaded = load_model(card_path)
    assert not loaded.training
    x = torch.randn(2, 1, 32, 24)
    a, b = _outputs(net, x), _outputs(loaded, x)
    assert set(a) == set(b) == {"classes"}
    torch.testing.assert_close(a["classes"], b["classes"], rtol=0, atol=0)
    assert card.name == "tiny" and card.method == "threeclass"
    assert card.weights_sha256 == sha256_file(card_path.with_suffix(".safetensors"))
    assert card.versions["torch"] == torch.__version__ and card.created
    assert card.ndim == 2 and card.in_channels == 1


@pytest.mark.parametrize("which", ["json", "safetensors", "stem"])
def test_load_by_card_weights_or_stem(tiny_model, which):
    card_path, _ = tiny_model
    stem = card_path.with_suffix("")
    path = {"json": card_path, "safetensors": stem.with_suffix(".safetensors"), "stem": stem}
    card, _ = load_model(path[which])
    assert card.name == "tiny"


def test_model_with_dots_in_its_name_loads(tmp_path):
    card, method, cfg = _card("nuclei-v0.1")
    net = method.build_net(cfg)
    card_path = save_model(tmp_path, "nuclei-v0.1", net, card)
    assert card_path.name == "nuclei-v0.1.json"
    assert resolve_model_files(card_path) == (
        tmp_path / "nuclei-v0.1.json",
        tmp_path / "nuclei-v0.1.safetensors",
    )
    loaded_card, _ = load_model(card_path)
    assert loaded_card.name == "nuclei-v0.1"
    loaded_card, _ = load_model(tmp_path / "nuclei-v0.1")  # the stem
    assert loaded_card.name == "nuclei-v0.1"


def test_torch_save_pickle_is_refused(tmp_path, tiny_model):
    _, net = tiny_model
    pt = tmp_path / "model.pt"
    torch.save(net.state_dict(), pt)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(pt)
    with pytest.raises(CheckpointError, match="pickle"):
        load_state(pt)


def test_pickle_renamed_to_safetensors_is_refused(tmp_path, tiny_model):
    card_path, net = tiny_model
    weights = card_path.with_suffix(".safetensors")
    torch.save(net.state_dict(), weights)  # a valid card now points at a pickle
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(card_path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(card_path, verify_checksum=False)
    with pytest.raises(CheckpointError, match="pickle"):
        load_state(weights)


def test_raw_pickle_protocol_is_refused(tmp_path):
    import pickle

    path = tmp_path / "x.safetensors"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(CheckpointError, match="pickle"):
        load_state(path)


def test_corrupt_safetensors_is_refused(tmp_path, tiny_model):
    card_path, _ = tiny_model
    weights = card_path.with_suffix(".safetensors")
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert not data.startswith((b"\x80", b"PK"))
    weights.write_bytes(data)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_state(weights)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(card_path, verify_checksum=False)


def test_truncated_safetensors_is_refused(tiny_model):
    card_path, _ = tiny_model
    weights = card_path.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(card_path, verify_checksum=False)


def test_checksum_mismatch_is_refused(tiny_model):
    card_path, net = tiny_model
    weights = card_path.with_suffix(".safetensors")
    other = get_method("threeclass").build_net(
        get_method("threeclass").config_type(depth=2, width=4)
    )
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(weights))
    with pytest.raises(CheckpointError, match="checksum"):
        load_model(card_path)
    load_model(card_path, verify_checksum=False)  # the file itself is fine


def _edit_card(card_path, **changes):
    data = json.loads(card_path.read_text())
    for key, value in changes.items():
        if key == "method_config":
            data["method_config"].update(value)
        else:
            data[key] = value
    card_path.write_text(json.dumps(data))


def test_card_that_does_not_fit_the_weights_is_refused(tiny_model):
    card_path, _ = tiny_model
    _edit_card(card_path, method_config={"width": 8})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(card_path)


def test_card_with_a_bad_method_config_is_refused(tiny_model):
    card_path, _ = tiny_model
    _edit_card(card_path, method_config={"widht": 8})
    with pytest.raises(CheckpointError, match="bad method_config"):
        load_model(card_path)


def test_card_with_an_unknown_method_is_refused(tiny_model):
    card_path, _ = tiny_model
    _edit_card(card_path, method="nosuchmethod")
    with pytest.raises(CheckpointError, match="nosuchmethod"):
        load_model(card_path)


def test_missing_files_are_refused(tmp_path, tiny_model):
    card_path, _ = tiny_model
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nothing.json")
    card_path.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights .* not found"):
        load_model(card_path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_state(tmp_path / "nothing.safetensors")


def test_read_card_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid JSON"):
        read_card(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        read_card(bad)
    bad.write_text('{"name": "x"}')
    with pytest.raises(CheckpointError, match="missing"):
        read_card(bad)
    card, _, _ = _card()
    bad.write_text(replace(card, format=99).to_json())
    with pytest.raises(CheckpointError, match="newer"):
        read_card(bad)
    with pytest.raises(CheckpointError, match="no such model card"):
        read_card(tmp_path / "absent.json")


def test_card_json_round_trip_ignores_unknown_keys():
    card, _, _ = _card()
    card = replace(card, description="d", metrics={"ap50": 0.5})
    data = json.loads(card.to_json())
    data["from_the_future"] = 1
    assert ModelCard.from_dict(data) == card


def test_check_input():
    card, _, _ = _card(in_channels=2)
    card.check_input(np.zeros((2, 8, 8)))
    with pytest.raises(CheckpointError, match="expects 2 channel"):
        card.check_input(np.zeros((1, 8, 8)))
    with pytest.raises(CheckpointError, match="2D but the image has 3 spatial axes"):
        card.check_input(np.zeros((2, 4, 8, 8)))
    card3d, _, _ = _card(ndim=3)
    card3d.check_input(np.zeros((1, 4, 8, 8)))
    with pytest.raises(CheckpointError, match="3D"):
        card3d.check_input(np.zeros((1, 8, 8)))


def test_optimizer_state_round_trip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    x = torch.randn(8, 3)
    for _ in range(3):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
    state = {
        "optimizer": opt.state_dict(),
        "step": 3,
        "note": "x",
        "none": None,
        "rng": torch.get_rng_state(),
    }
    path = save_state(tmp_path / "s.safetensors", state, metadata={"kind": "test"})
    assert path.read_bytes()[:1] != b"\x80"
    back = load_state(path)
    assert back["step"] == 3 and back["note"] == "x" and back["none"] is None
    assert torch.equal(back["rng"], state["rng"])
    saved, loaded = state["optimizer"], back["optimizer"]
    assert set(loaded["state"]) == set(saved["state"])  # integer parameter ids kept
    for pid, pstate in saved["state"].items():
        for key, value in pstate.items():
            torch.testing.assert_close(loaded["state"][pid][key], value, rtol=0, atol=0)
    assert loaded["param_groups"][0]["lr"] == 1e-2
    assert list(loaded["param_groups"][0]["params"]) == list(saved["param_groups"][0]["params"])
    # a fresh optimizer fed the loaded state takes exactly the same next step
    net2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    net2.load_state_dict(net.state_dict())
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1.0)
    opt2.load_state_dict(loaded)
    for o, n in ((opt, net), (opt2, net2)):
        o.zero_grad()
        n(x).pow(2).mean().backward()
        o.step()
    for p1, p2 in zip(net.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)


def test_save_state_refuses_what_needs_pickle(tmp_path):
    with pytest.raises(CheckpointError, match="without pickling"):
        save_state(tmp_path / "s.safetensors", {"f": object()})


def test_save_model_overwrites_atomically(tmp_path, tiny_model):
    card_path, net = tiny_model
    card = read_card(card_path)
    save_model(card_path.parent, "tiny", net, card)
    leftovers = [p.name for p in card_path.parent.iterdir() if ".tmp" in p.name]
    assert leftovers == []
    load_model(card_path)


def test_half_precision_weights_halve_the_file_and_load_as_float32(tmp_path, tiny_model):
    card_path, net = tiny_model
    card, _ = load_model(card_path)
    half_path = save_model(
        tmp_path / "half", "tiny", net, replace(card, weights_sha256=""), half=True
    )
    full_size = card_path.with_suffix(".safetensors").stat().st_size
    half_size = half_path.with_suffix(".safetensors").stat().st_size
    assert half_size < 0.75 * full_size  # tensors halve; the header (names, shapes) does not
    half_card, loaded = load_model(half_path)
    assert half_card.weights_dtype == "float16" and card.weights_dtype == "float32"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(1, 1, 32, 32)
    a, b = _outputs(net, x)["classes"], _outputs(loaded, x)["classes"]
    torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)
    assert not torch.equal(a, b)  # the rounding through float16 is real


def test_safetensors_whose_header_length_starts_with_the_pickle_byte_loads(tmp_path):
    """A header of 0x..80 bytes puts pickle's magic byte first: still safetensors."""
    from safetensors.numpy import save

    from napari_instseg.core.checkpoint import refuse_pickle

    for pad in range(300):  # find a metadata length that makes the first byte 0x80
        data = save({"w": np.zeros(3, np.float32)}, metadata={"pad": "x" * pad})
        if data[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a 0x80 first byte")
    path = tmp_path / "w.safetensors"
    path.write_bytes(data)
    refuse_pickle(path)  # no error
    assert path.stat().st_size > 9
