"""Architecture rules that code review alone does not keep: import contracts, a Qt- and
torch-free import of the core entry points, and a clean ruff run. No Qt needed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: Top-level packages that the library's light entry points must not pull in.
HEAVY = ("torch", "qtpy", "PyQt6", "PyQt5", "PySide6", "napari", "magicgui", "superqt", "vispy")


def _tool(name: str) -> str | None:
    """The console script ``name`` of this interpreter's environment, else one on PATH."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def test_import_contracts_are_kept():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    lint_imports = _tool("lint-imports")
    if lint_imports is None:
        pytest.fail("lint-imports not found: install the testing extra (import-linter)")
    proc = subprocess.run(
        [lint_imports, "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    match = re.search(r"Contracts: (\d+) kept, (\d+) broken", out)
    assert match, out
    kept, broken = int(match[1]), int(match[2])
    assert (kept, broken) == (len(contracts), 0), out
    for contract in contracts:
        assert f"{contract['name']} KEPT" in out, out


@pytest.mark.parametrize(
    "statement",
    [
        "import napari_instseg",
        "import napari_instseg.core.metrics",
        "import napari_instseg.cli; napari_instseg.cli.build_parser()",
    ],
)
def test_light_imports_stay_light(statement):
    code = textwrap.dedent(
        f"""
        import json, sys
        {statement}
        heavy = {HEAVY!r}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"`{statement}` imported {loaded}"


def test_ruff_is_clean():
    ruff = _tool("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    proc = subprocess.run(
        [ruff, "check", "--no-cache", "src", "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
