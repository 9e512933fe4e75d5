"""napari sample-data contributions (File > Open Sample > napari instseg).

Each function returns napari LayerData tuples: the image and its ground-truth Labels layer.
Loading itself lives in the Qt-free :mod:`napari_instseg.core.samples`.
"""

from __future__ import annotations

import numpy as np

from napari_instseg.core.samples import load_sample, sample_info

LayerDataTuple = tuple[np.ndarray, dict, str]

# Layer titles shown in napari; the 3D one says SYNTHETIC on purpose.
_TITLES = {
    "nuclei2d_dsb_stardist": "nuclei 2D (DSB2018)",
    "phase2d_usiigaci_set1_crop512": "phase-contrast cells 2D (Usiigaci)",
    "nuclei3d_synthetic_stardist": "nuclei 3D SYNTHETIC (stardist)",
}


def _contrast_limits(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image, (0.1, 99.9))
    if hi <= lo:  # flat image: fall back to the full range
        lo, hi = float(image.min()), float(image.max())
        hi = hi if hi > lo else lo + 1.0
    return float(lo), float(hi)


def _sample_layers(name: str) -> list[LayerDataTuple]:
    image, labels = load_sample(name)
    info = sample_info(name)
    title = _TITLES.get(name, name)
    metadata = {
        "sample": name,
        "source": info.get("source", ""),
        "licence": info.get("licence", ""),
        "citation": info.get("citation", ""),
        "description": info.get("description", ""),
        "synthetic": bool(info["synthetic"]),
        "n_instances": int(info["n_instances"]),
    }
    image_kwargs = {
        "name": title,
        "colormap": "gray",
        "contrast_limits": _contrast_limits(image),
        "metadata": dict(metadata),
    }
    labels_kwargs = {
        "name": f"{title} ground truth",
        "opacity": 0.5,
        # hidden: shown on top it makes the image look segmented already
        "visible": False,
        "metadata": {**metadata, "ground_truth": True},
    }
    return [(image, image_kwargs, "image"), (labels, labels_kwargs, "labels")]


def nuclei2d_dsb_stardist() -> list[LayerDataTuple]:
    """Real 2D fluorescence nuclei (DSB2018, 512x512) with ground truth."""
    return _sample_layers("nuclei2d_dsb_stardist")


def phase2d_usiigaci_set1_crop512() -> list[LayerDataTuple]:
    """Real 2D phase-contrast cells (Usiigaci crop, 512x512) with ground truth."""
    return _sample_layers("phase2d_usiigaci_set1_crop512")


def nuclei3d_synthetic_stardist() -> list[LayerDataTuple]:
    """SYNTHETIC 3D nuclei volume (stardist, 31x61x57) with ground truth."""
    return _sample_layers("nuclei3d_synthetic_stardist")
