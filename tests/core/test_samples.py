"""Bundled sample data: loading, metadata, and loading from an installed wheel (no Qt)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_instseg.core.samples import (
    SampleNotFoundError,
    list_samples,
    load_sample,
    sample_data_dir,
    sample_info,
)

REPO = Path(__file__).resolve().parents[2]

EXPECTED = {
    # name: (shape, n_instances, synthetic)
    "nuclei2d_dsb_stardist": ((512, 512), 125, False),
    "phase2d_usiigaci_set1_crop512": ((512, 512), 28, False),
    "nuclei3d_synthetic_stardist": ((31, 61, 57), 51, True),
}


def test_list_samples():
    assert list_samples() == sorted(EXPECTED)


def test_sample_dir_has_the_files():
    root = sample_data_dir()
    for name in EXPECTED:
        assert (root / "images" / f"{name}.tif").is_file()
        assert (root / "masks" / f"{name}.tif").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_sample(name):
    shape, n_instances, synthetic = EXPECTED[name]
    image, labels = load_sample(name)

    assert image.shape == shape
    assert image.dtype == np.uint16
    assert labels.shape == shape
    assert labels.dtype == np.uint32
    assert image.std() > 0
    # 0 = background, instances numbered 1..N with no gaps
    np.testing.assert_array_equal(np.unique(labels), np.arange(n_instances + 1))

    info = sample_info(name)
    assert info["n_instances"] == n_instances
    assert info["synthetic"] is synthetic
    assert info["shape"] == "x".join(map(str, shape))
    assert info["source"] and info["licence"]


@pytest.mark.parametrize("loader", [load_sample, sample_info])
def test_unknown_sample_raises(loader):
    with pytest.raises(SampleNotFoundError, match="unknown sample 'no_such_sample'"):
        loader("no_such_sample")


def test_missing_folder_raises(monkeypatch, tmp_path):
    from napari_instseg.core import samples

    fake_package = tmp_path / "src" / "napari_instseg"
    fake_package.mkdir(parents=True)
    monkeypatch.setattr(samples.resources, "files", lambda _: fake_package)
    with pytest.raises(SampleNotFoundError, match="sample data not found"):
        samples.sample_data_dir()


def _hatchling_available() -> bool:
    try:
        import hatchling  # noqa: F401
    except ImportError:
        return False
    return True


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_samples_load_from_installed_wheel(tmp_path):
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip("needs a source checkout to build the wheel from")
    wheel_dir = tmp_path / "wheel"
    target = tmp_path / "site"
    # Without hatchling in this environment pip fetches it in an isolated build env.
    isolation = ["--no-build-isolation"] if _hatchling_available() else []
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", *isolation, "-w", str(wheel_dir), str(REPO)])
    (wheel,) = wheel_dir.glob("napari_instseg-*.whl")
    _run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)])

    check = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import napari_instseg
        from napari_instseg.core.samples import load_sample, sample_data_dir
        image, labels = load_sample("nuclei2d_dsb_stardist")
        assert image.shape == (512, 512), image.shape
        assert labels.dtype.name == "uint32" and int(labels.max()) == 125
        target = Path(sys.argv[1]).resolve()
        package_file = Path(napari_instseg.__file__).resolve()
        assert package_file.is_relative_to(target), package_file
        assert sample_data_dir().resolve().is_relative_to(target), sample_data_dir()
        assert "napari" not in sys.modules and "qtpy" not in sys.modules
        print("OK", sample_data_dir())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    result = _run([sys.executable, "-c", check, str(target)], env=env, cwd=run_dir)
    assert result.stdout.startswith("OK")
