"""Small bundled sample images with instance ground truth.

The pairs live in ``sample_data/`` at the top of the repository and are copied into the
wheel as ``napari_instseg/sample_data`` (see ``pyproject.toml``). Layout::

    sample_data/images/NAME.tif   2D (Y, X) or 3D (Z, Y, X) single-channel image
    sample_data/masks/NAME.tif    instance labels, 0 = background, 1..N
    sample_data/metadata.csv      one row per sample (shape, dtype, n_instances, real, ...)

This module is Qt-free; the napari sample-data contributions in ``plugin/sample_data.py``
are thin wrappers around :func:`load_sample`.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np
import tifffile

__all__ = [
    "SampleNotFoundError",
    "list_samples",
    "load_sample",
    "sample_data_dir",
    "sample_info",
]

_METADATA = "metadata.csv"

# Provenance that metadata.csv does not carry (see sample_data/README in the shared data).
_PROVENANCE: dict[str, dict[str, str]] = {
    "nuclei2d_dsb_stardist": {
        "source": "stardist 0.9.2 test_image_nuclei_2d: a 512x512 crop of Kaggle Data Science "
        "Bowl 2018 (BBBC038) image 4dbbb275960ab9e4",
        "licence": "CC0 1.0 (DSB2018/BBBC038 image); BSD-3-Clause (stardist package)",
        "citation": "Caicedo et al., Nature Methods 2019; Schmidt et al., MICCAI 2018",
    },
    "phase2d_usiigaci_set1_crop512": {
        "source": "Usiigaci training image usiigaci_set1, rows 255:767, cols 256:768",
        "licence": "MIT, Copyright (c) 2018 Okinawa Institute of Science & Technology "
        "Graduate University",
        "citation": "Tsai et al., SoftwareX 2019 (Usiigaci)",
    },
    "nuclei3d_synthetic_stardist": {
        "source": "stardist 0.9.2 test_image_nuclei_3d: SYNTHETIC nuclei, not real data",
        "licence": "BSD-3-Clause (stardist), Copyright (c) 2018-2025 Uwe Schmidt, Martin Weigert",
        "citation": "Weigert et al., WACV 2020 (StarDist 3D)",
    },
}


class SampleNotFoundError(LookupError):
    """Raised for an unknown sample name or when the sample folder cannot be found."""


def _is_sample_dir(path: Path) -> bool:
    return (path / _METADATA).is_file() and (path / "images").is_dir()


def sample_data_dir() -> Path:
    """Return the folder that holds the bundled sample data.

    Looks first inside the installed package (``napari_instseg/sample_data``, as put there
    by the wheel), then in the source tree (``<repo>/sample_data``, for editable installs).

    Raises
    ------
    SampleNotFoundError
        If neither location holds a sample folder.
    """
    package = resources.files("napari_instseg")
    candidates: list[Path] = []
    if isinstance(package, Path):
        candidates.append(package / "sample_data")
        # Editable install: <repo>/src/napari_instseg -> <repo>/sample_data
        candidates.append(package.parent.parent / "sample_data")
    else:  # an unusual loader (e.g. a zip); fall back to this file's location
        here = Path(__file__).resolve().parent.parent
        candidates += [here / "sample_data", here.parent.parent / "sample_data"]
    for candidate in candidates:
        if _is_sample_dir(candidate):
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise SampleNotFoundError(
        f"napari-instseg sample data not found (looked in: {tried}). Install the package "
        "from a wheel, or use an editable install of a full source checkout."
    )


def _read_metadata() -> dict[str, dict[str, str]]:
    with open(sample_data_dir() / _METADATA, newline="", encoding="utf-8") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def list_samples() -> list[str]:
    """Return the names of the bundled samples, sorted."""
    return sorted(_read_metadata())


def sample_info(name: str) -> dict[str, object]:
    """Return what is known about one sample: its metadata.csv row plus provenance.

    Keys include ``name``, ``shape``, ``n_instances`` (int), ``synthetic`` (bool),
    ``description``, ``source``, ``licence`` and ``citation``.
    """
    rows = _read_metadata()
    if name not in rows:
        raise SampleNotFoundError(
            f"unknown sample {name!r}; available samples: {', '.join(sorted(rows))}"
        )
    row = rows[name]
    info: dict[str, object] = dict(row)
    info["n_instances"] = int(row["n_instances"])
    info["synthetic"] = row.get("real", "").strip().lower() != "yes"
    info.update(_PROVENANCE.get(name, {}))
    info.pop("real", None)
    return info


def load_sample(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one bundled sample.

    Parameters
    ----------
    name : str
        One of :func:`list_samples`.

    Returns
    -------
    image : ndarray
        The image as stored, ``(Y, X)`` or ``(Z, Y, X)``.
    labels : ndarray of uint32
        Ground-truth instances, same shape, 0 = background, 1..N.

    Examples
    --------
    >>> image, labels = load_sample("nuclei2d_dsb_stardist")
    >>> image.shape, labels.dtype
    ((512, 512), dtype('uint32'))
    """
    sample_info(name)  # raises SampleNotFoundError for an unknown name
    root = sample_data_dir()
    image_path = root / "images" / f"{name}.tif"
    mask_path = root / "masks" / f"{name}.tif"
    for path in (image_path, mask_path):
        if not path.is_file():
            raise SampleNotFoundError(f"sample {name!r} is listed but {path} is missing")
    image = tifffile.imread(image_path)
    labels = tifffile.imread(mask_path).astype(np.uint32, copy=False)
    if image.shape != labels.shape:
        raise ValueError(
            f"sample {name!r}: image shape {image.shape} != labels shape {labels.shape}"
        )
    return image, labels
