"""``napari-instseg export --model NAME --bioimageio OUT.zip`` and ``models --import``."""

from __future__ import annotations

import zipfile

import yaml

from napari_instseg.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_export_then_import_a_bioimageio_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_USER_MODELS", str(tmp_path / "user"))
    out = tmp_path / "pkg.zip"
    rc, text, err = run(
        capsys, "export", "--model", "threeclass-nuclei", "--bioimageio", out,
        "--set", "min_size=44", "--model-name", "nuclei-cli",
    )  # fmt: skip
    assert rc == 0, err
    assert str(out) in text
    with zipfile.ZipFile(out) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    assert rdf["config"]["napari_instseg"]["knobs"]["min_size"] == 44

    rc, text, err = run(capsys, "export", "--model", "threeclass-nuclei", "--bioimageio", out)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0]

    rc, text, err = run(capsys, "models", "--import", out)
    assert rc == 0, err
    assert (tmp_path / "user" / "nuclei-cli.json").is_file()
    rc, text, err = run(capsys, "models")
    assert rc == 0 and "nuclei-cli" in text


def test_import_of_a_foreign_package_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_USER_MODELS", str(tmp_path / "user"))
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump({"type": "model", "format_version": "0.5.3"}))
    rc, text, err = run(capsys, "models", "--import", foreign)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-instseg models: error: foreign.zip:")
    assert "napari-instseg did not export" in lines[0]
    assert not (tmp_path / "user").exists()


def test_export_to_a_path_that_cannot_be_written_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    rc, _, err = run(
        capsys, "export", "--model", "threeclass-nuclei", "--bioimageio", blocker / "pkg.zip"
    )
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "not-a-folder is a file, not a folder" in lines[0]
    assert blocker.read_text() == "a file where a folder should be"


def test_a_model_the_spec_cannot_express_is_one_line_saying_what_is_missing(tmp_path, capsys):
    """A card from a newer version with a normalisation that bioimage.io preprocessing has
    no step for: refused, naming the normalisation and what can be exported."""
    import json
    import shutil

    from napari_instseg.core.zoo import zoo_dir

    card = json.loads((zoo_dir() / "threeclass-nuclei.json").read_text())
    card["normalisation"] = {"kind": "zscore"}
    (tmp_path / "zscored.json").write_text(json.dumps(card))
    shutil.copy(zoo_dir() / "threeclass-nuclei.safetensors", tmp_path / "zscored.safetensors")
    out = tmp_path / "pkg.zip"
    rc, _, err = run(capsys, "export", "--model", tmp_path / "zscored.json", "--bioimageio", out)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "'zscore' has no bioimage.io preprocessing" in lines[0]
    assert "percentile and none can be exported" in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "zscored.json",
        "zscored.safetensors",
    ]
