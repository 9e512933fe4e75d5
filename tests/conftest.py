"""Shared test set-up.

* torch is imported first (when installed): importing it after Qt has caused
  library-ordering problems elsewhere, and it costs nothing to rule that out.
* Fail fast when GUI tests would run with no X display: napari needs a real GL context,
  and without one every viewer test crashes with a cascade of unrelated-looking GL errors.
  pytest-xvfb starts Xvfb by itself (and sets DISPLAY) when the Xvfb binary is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

try:
    import torch  # noqa: F401
except ImportError:  # the core tests that need torch import it themselves
    pass

_PLUGIN_TESTS = Path(__file__).parent / "plugin"

NO_DISPLAY_MESSAGE = (
    "No X display: install Xvfb (apt-get install xvfb libxcb-icccm4 libxcb-keysyms1); "
    "pytest-xvfb then starts it automatically. Or deselect GUI tests with -m 'not gui'."
)


def _needs_display(item: pytest.Item) -> bool:
    if item.get_closest_marker("gui") is not None:
        return True
    return Path(str(item.path)).is_relative_to(_PLUGIN_TESTS)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Runs after -m / -k deselection, so `pytest -m "not gui"` works without a display.
    if session.config.option.collectonly:
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if any(_needs_display(item) for item in session.items):
        pytest.exit(NO_DISPLAY_MESSAGE, returncode=3)


@pytest.fixture(autouse=True)
def _private_user_models(tmp_path_factory, monkeypatch):
    """Keep tests away from the user's own model folder (~/.napari-instseg/models)."""
    monkeypatch.setenv("NAPARI_INSTSEG_USER_MODELS", str(tmp_path_factory.mktemp("user_models")))


def _save_tiny(directory, method_name: str, backend: str, config: dict, card_fields: dict):
    """Save a freshly initialised (seeded) tiny 2D model ``<method>-tiny``; its card path."""
    import torch

    from napari_instseg.core.checkpoint import ModelCard, save_model
    from napari_instseg.core.configs import config_to_dict
    from napari_instseg.core.methods import get_method

    method = get_method(method_name)
    cfg = method.config_type(**{"depth": 2, "width": 4, **config})
    torch.manual_seed(0)
    name = f"{method_name}-tiny"
    card = ModelCard(name, method_name, config_to_dict(cfg), backend, **card_fields)
    return save_model(directory, name, method.build_net(cfg), card)


@pytest.fixture
def save_tiny_threeclass():
    """Factory: like ``save_tiny_spoco``, for a tiny three-class model ``threeclass-tiny``
    with the watershed back-end (the fastest to run end to end)."""
    return lambda directory, **card_fields: _save_tiny(
        directory, "threeclass", "watershed", {}, card_fields
    )


@pytest.fixture
def save_tiny_spoco():
    """Factory: ``save_tiny_spoco(directory, **card_fields)`` saves a freshly initialised tiny
    2D SPOCO model called ``spoco-tiny`` (seeded) and returns its card path."""
    return lambda directory, **card_fields: _save_tiny(
        directory, "spoco", "meanshift", {"embedding_dim": 4}, card_fields
    )


@pytest.fixture
def save_tiny_affinity():
    """Factory: like ``save_tiny_spoco``, for a tiny pixel-embedded affinity model
    ``affinity-tiny`` (shifts 1 and 3) with the mutex watershed."""
    return lambda directory, **card_fields: _save_tiny(
        directory,
        "affinity",
        "mutex_watershed",
        {"embedding_dim": 4, "shifts": (1, 3)},
        card_fields,
    )


@pytest.fixture
def save_tiny_allcell():
    """Factory: like ``save_tiny_spoco``, for a tiny All-Cell Segmenter ``allcell-tiny``
    (depth 4 for its stride-8 detection, two anchors) with the detection watershed."""
    return lambda directory, **card_fields: _save_tiny(
        directory,
        "allcell",
        "detection_watershed",
        {"depth": 4, "anchors": (8.0, 8.0, 16.0, 16.0)},
        card_fields,
    )


@pytest.fixture
def save_tiny_patchperpix():
    """Factory: like ``save_tiny_spoco``, for a tiny PatchPerPix model ``patchperpix-tiny``
    (5x5 patches from an 8-unit code) with the patch consensus back-end."""
    return lambda directory, **card_fields: _save_tiny(
        directory,
        "patchperpix",
        "patch_consensus",
        {"patch_size": 5, "code_units": 8, "decoder_hidden": 16},
        card_fields,
    )


class _Stained:
    """A crop of the bundled nuclei sample, and an H&E-looking RGB copy of any fluorescence
    image (appearance tests)."""

    @staticmethod
    def nuclei_sample():
        import tifffile

        from napari_instseg.core.samples import sample_data_dir

        path = sample_data_dir() / "images" / "nuclei2d_dsb_stardist.tif"
        return tifffile.imread(path).astype(np.float32)[:256, :256]

    @staticmethod
    def stained_like(fluo, dtype=np.uint8):
        """Purple where the fluorescence is bright, pink elsewhere: absorbances
        (Beer-Lambert) of haematoxylin and a little eosin on a bright background."""
        x = (fluo - fluo.min()) / (np.percentile(fluo, 99.8) - fluo.min())
        x = np.clip(x, 0, 1)[..., None]
        od = 1.2 * x * np.array([0.65, 0.70, 0.29]) + 0.25 * np.array([0.07, 0.99, 0.11])
        top = 255 if dtype == np.uint8 else 65535
        return np.clip(top * 0.95 * np.exp(-od), 0, top).astype(dtype)


@pytest.fixture(scope="session")
def stained():
    return _Stained
