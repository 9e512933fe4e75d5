"""The npe2 manifest is valid and napari finds it through the entry point."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import npe2

from napari_instseg.core.samples import list_samples

PLUGIN = "napari-instseg"


def test_manifest_validates_with_npe2_cli():
    npe2_exe = Path(sys.executable).parent / "npe2"
    cmd = [str(npe2_exe)] if npe2_exe.exists() else [sys.executable, "-m", "npe2"]
    result = subprocess.run([*cmd, "validate", PLUGIN], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid!" in result.stdout, result.stdout + result.stderr


def test_entry_point_points_at_manifest():
    eps = [ep for ep in entry_points(group="napari.manifest") if ep.name == PLUGIN]
    assert len(eps) == 1, "napari-instseg is not installed (pip install -e .)"
    assert eps[0].value == "napari_instseg:napari.yaml"


def test_manifest_discovered_and_complete():
    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    assert manifest.name == PLUGIN

    # A fresh manager that only knows what entry-point discovery finds.
    pm = npe2.PluginManager()
    pm.discover(include_npe1=False)
    assert pm.get_manifest(PLUGIN).name == PLUGIN
    assert {key for key, _ in pm.iter_sample_data()} >= {PLUGIN}

    contributions = manifest.contributions
    sample_keys = sorted(s.key for s in contributions.sample_data)
    assert sample_keys == list_samples()

    by_id = {c.id: c for c in contributions.commands}
    for sample in contributions.sample_data:
        assert sample.command in by_id
    synthetic = [s for s in contributions.sample_data if "synthetic" in s.key]
    assert synthetic and all("SYNTHETIC" in s.display_name for s in synthetic)

    for command in contributions.commands:
        module_name, _, attr = command.python_name.partition(":")
        assert module_name.startswith("napari_instseg.plugin"), command.python_name
        assert callable(getattr(importlib.import_module(module_name), attr))
