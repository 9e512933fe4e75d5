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
