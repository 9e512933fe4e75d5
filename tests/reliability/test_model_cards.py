"""A malformed model card in a model folder is skipped with one warning naming it; every other
model (shipped ones included) stays listed and loadable by name."""

from __future__ import annotations

import json
import shutil

import pytest
from _faults import MODEL, one_line, run

from napari_instseg.core.zoo import list_models, zoo_dir

BAD_CARDS = {
    "format-as-text": lambda card: {**card, "format": "1"},
    "metrics-as-text": lambda card: {**card, "metrics": "n/a"},
    "object-size-as-text": lambda card: {**card, "object_size": "big"},
    "a-list": lambda card: [card],
    "invalid-json": None,
}


@pytest.fixture(params=list(BAD_CARDS))
def bad_card(request, models_env):
    """A second model in the model folder whose card is broken in one way."""
    card = json.loads((models_env / f"{MODEL}.json").read_text())
    path = models_env / "broken.json"
    make = BAD_CARDS[request.param]
    path.write_text(json.dumps(make({**card, "name": "broken"})) if make else '{"name": "bro')
    shutil.copy(models_env / f"{MODEL}.safetensors", models_env / "broken.safetensors")
    return path


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("napari-instseg: warning:")]


def test_models_lists_the_others_and_warns_once(bad_card, capsys):
    rc, out, err = run(capsys, "models")
    assert rc == 0, err
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert MODEL in names and "broken" not in names
    assert {c.name for c, _ in list_models()} <= set(names)  # shipped models still there
    assert len(names) > 1
    (line,) = warning_lines(err)
    assert str(bad_card) in line and "skipped" in line
    assert err.strip() == line


def test_models_json_stays_valid_json(bad_card, capsys):
    rc, out, err = run(capsys, "models", "--json")
    assert rc == 0, err
    assert MODEL in {e["name"] for e in json.loads(out)}
    assert len(warning_lines(err)) == 1


def test_lookup_by_name_works_with_one_warning(bad_card, image, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run(capsys, "segment", image, "--model", MODEL, "--output", out)
    assert rc == 0, err
    assert (out / "cells.tif").exists()
    (line,) = warning_lines(err)  # once, however many lookups read the folder
    assert str(bad_card) in line


def test_the_broken_model_by_name_is_not_found(bad_card, image, tmp_path, capsys):
    rc, _, err = run(capsys, "segment", image, "--model", "broken", "--output", tmp_path / "o")
    assert rc == 2
    error = [line for line in err.splitlines() if "error:" in line]
    assert "no model called 'broken'" in one_line("\n".join(error), "segment")
    assert len(warning_lines(err)) == 1
    assert not (tmp_path / "o").exists()


def test_a_mistyped_card_is_refused_when_loaded_by_path(bad_card, image, tmp_path, capsys):
    rc, _, err = run(capsys, "segment", image, "--model", bad_card, "--output", tmp_path / "o")
    assert rc == 2
    assert bad_card.name in one_line(err, "segment")


def test_every_shipped_card_passes_the_type_check(caplog):
    shipped = sorted(p.stem for p in zoo_dir().glob("*.json"))
    with caplog.at_level("WARNING", logger="napari_instseg"):
        listed = {path.stem for _, path in list_models() if path.parent == zoo_dir()}
    assert sorted(listed) == shipped
    assert not caplog.records


def test_an_unreadable_card_is_skipped_too(models_env, capsys):
    (models_env / "folder.json").mkdir()  # reading it fails with an OSError
    (models_env / "folder.safetensors").write_bytes(b"")
    rc, out, err = run(capsys, "models")
    assert rc == 0, err
    assert MODEL in out
    (line,) = warning_lines(err)
    assert str(models_env / "folder.json") in line


def test_a_card_never_holds_a_bare_nan():
    """A NaN measured in training (a validation with nothing to score) is written as null:
    a bare ``NaN`` is not JSON, and other readers of the card refuse it."""
    from napari_instseg.core.checkpoint import ModelCard

    def refuse(constant):
        raise AssertionError(f"{constant} in the card")

    nan = float("nan")
    card = ModelCard(
        "a", "threeclass", {}, "watershed", object_size=nan, metrics={"val": {"ap@0.50": nan}}
    )
    data = json.loads(card.to_json(), parse_constant=refuse)
    assert data["object_size"] is None and data["metrics"]["val"]["ap@0.50"] is None
    assert ModelCard.from_dict(data).object_size is None


def test_a_card_with_an_out_of_range_knob_is_refused_before_any_work(
    models_env, image, tmp_path, capsys
):
    """A hand-edited card is checked against the same declared ranges as --set."""
    card = json.loads((models_env / f"{MODEL}.json").read_text())
    card["backend_config"] = {**card.get("backend_config", {}), "fg_threshold": 2.0}
    (models_env / f"{MODEL}.json").write_text(json.dumps(card))
    out = tmp_path / "out"
    rc, _, err = run(capsys, "segment", image, "--model", MODEL, "--output", out)
    assert rc == 2
    line = one_line(err, "segment")
    assert "fg_threshold = 2.0 is outside its range" in line
    assert f"{MODEL}.json" in line  # names the card to fix
    assert not out.exists()
