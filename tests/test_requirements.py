"""The pinned install: every pin of ``requirements/constraints.txt`` must exist on the public
package index, which has no ``+cpu`` builds; and ``.ci/public_index.py``, the CI step that
shows it with pip's resolver, reads the file and pip's report as it should."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"


@pytest.fixture(scope="module")
def public_index():
    spec = importlib.util.spec_from_file_location("public_index", ROOT / ".ci" / "public_index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_pin_is_exact_and_has_no_local_label(public_index):
    pins = public_index.read_pins(CONSTRAINTS)
    assert len(pins) > 100  # the whole development venv
    local = {name: v for name, v in pins.items() if "+" in v}
    assert not local, f"local builds exist only on their own index, not PyPI: {local}"
    assert pins["torch"] == "2.13.0"


def test_torch_pin_matches_pyproject(public_index):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = [d for d in project["dependencies"] if d.replace(" ", "").startswith("torch==")]
    assert torch == [f"torch=={public_index.read_pins(CONSTRAINTS)['torch']}"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("numpy==2.4.6\ntorch>=2.13\n", "not an exact pin"),
        ("numpy==2.4.6\nNumPy==2.4.6\n", "pinned twice"),
        ("# only a comment\n", "no pins"),
    ],
)
def test_a_file_of_other_than_exact_pins_is_refused(public_index, tmp_path, capsys, text, words):
    path = tmp_path / "constraints.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=words):
        public_index.read_pins(path)
    assert public_index.main([str(path), "--index-url", "http://127.0.0.1:9/simple"]) == 2
    assert words in capsys.readouterr().err


def _item(name: str, version: str, url: str) -> dict:
    return {"metadata": {"name": name, "version": version}, "download_info": {"url": url}}


def test_report_check_names_each_problem(public_index):
    pins = {"numpy": "2.4.6", "torch": "2.13.0", "pyqt6-qt6": "6.11.2"}
    index = "https://pypi.org/simple"
    files = "https://files.pythonhosted.org/packages/x"
    good = {
        "install": [
            _item("numpy", "2.4.6", f"{files}/numpy.whl"),
            _item("torch", "2.13.0", f"{files}/torch.whl"),
            _item("PyQt6_Qt6", "6.11.2", f"{files}/qt.whl"),  # names compare as PEP 503 says
            _item("triton", "3.7.0", f"{files}/triton.whl"),  # a dependency, not pinned: fine
        ]
    }
    assert public_index.check_report(good, pins, index) == []
    bad = {
        "install": [
            _item("numpy", "2.4.5", f"{files}/numpy.whl"),
            _item("torch", "2.13.0", "file:///opt/wheels/torch-2.13.0-cp311.whl"),
        ]
    }
    problems = public_index.check_report(bad, pins, index)
    assert problems == [
        "torch would come from file:///opt/wheels/torch-2.13.0-cp311.whl, not the public index",
        "numpy==2.4.6 resolved as 2.4.5",
        "pyqt6-qt6==6.11.2 is not in the resolution",
    ]


def test_an_unreachable_index_skips_with_one_line(public_index, capsys):
    # Port 9 (discard) on loopback refuses at once: the offline CI machine's case.
    assert public_index.main([str(CONSTRAINTS), "--index-url", "http://127.0.0.1:9/simple"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "SKIPPED" in out[0] and "127.0.0.1:9" in out[0]
