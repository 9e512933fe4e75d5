"""Reading images and the shared data layout (``images/``, ``masks/``, ``metadata.csv``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..arrays import InputError, as_labels

IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr")


@dataclass(frozen=True)
class Sample:
    """One training or evaluation item: image ``(C, *spatial)`` float32, labels, known mask.

    ``known`` marks the pixels whose label is known (all of them for dense ground truth);
    losses ignore everything else.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    known: np.ndarray


def read_image(path: str | Path) -> np.ndarray:
    """Read a tif or zarr image into memory, with a clear error for anything else."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            return tifffile.imread(path)
        except Exception as err:  # tifffile raises many types for broken files
            raise InputError(f"cannot read {path} as TIFF: {err}") from err
    if suffix == ".zarr":
        import zarr

        try:
            node = zarr.open(str(path), mode="r")
        except Exception as err:
            raise InputError(f"cannot open {path} as zarr: {err}") from err
        if isinstance(node, zarr.Group):
            # OME-Zarr: the first multiscale level is the full-resolution image.
            ms = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
            key = ms[0]["datasets"][0]["path"] if ms else next(iter(node.array_keys()), None)
            if key is None:
                raise InputError(f"{path} is a zarr group with no arrays")
            node = node[key]
        return np.asarray(node[...])
    raise InputError(f"unsupported image format {suffix!r} for {path}; use .tif or .zarr")


def read_split(root: str | Path) -> dict[str, str]:
    """Map image name to its split from ``root/metadata.csv``."""
    return read_column(root, "split")


def read_column(root: str | Path, column: str) -> dict[str, str]:
    """Map image name to one column of ``root/metadata.csv`` ('' where it has none)."""
    meta = Path(root) / "metadata.csv"
    if not meta.exists():
        raise InputError(f"{root} has no metadata.csv (expected the shared data layout)")
    with meta.open(newline="") as f:
        return {row["name"]: row.get(column, "") or "" for row in csv.DictReader(f)}


def _is_2d(mask_or_image: Path) -> bool:
    """Whether an image in the shared layout is 2D: its mask (same name) has two axes."""
    mask = mask_or_image.parent.parent / "masks" / mask_or_image.name
    if not mask.exists():
        return True
    import tifffile

    with tifffile.TiffFile(mask) as tif:
        return len(tif.series[0].shape) == 2


def load_folder(
    root: str | Path,
    *,
    split: str | None = None,
    names: list[str] | None = None,
    normalise=None,
    appearance: str = "as-is",
    trained_on: str = "fluorescence",
    kinds: list[str] | None = None,
) -> list[Sample]:
    """Load the pairs of a folder in the shared layout, optionally one split only.

    Parameters
    ----------
    root : path
        Folder with ``images/``, ``masks/`` and ``metadata.csv``.
    split : str, optional
        Keep only images whose ``split`` column equals this ('train', 'val', 'test').
    names : list of str, optional
        Keep only these image names.
    normalise : callable, optional
        Applied to each channel-first image, e.g. :func:`normalise_percentile`.
    appearance, trained_on : str
        How each image becomes one channel (:func:`~napari_instseg.core.appearance.to_model_input`):
        colour to grey by default; ``"auto"`` maps stained and brightfield images into the
        appearance of ``trained_on`` images, as segmenting does.
    kinds : list of str, optional
        Keep only images whose ``kind`` column (where the folder has one) is one of these.
    """
    root = Path(root)
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise InputError(f"{root} must contain images/ and masks/ folders")
    splits = read_split(root)
    chosen = sorted(n for n, s in splits.items() if split is None or s == split)
    if names is not None:
        chosen = [n for n in chosen if n in set(names)]
    if kinds is not None:
        kind_of = read_column(root, "kind")
        chosen = [n for n in chosen if kind_of.get(n, "") in set(kinds)]
    if not chosen:
        raise InputError(f"no images in {root} for split {split!r}")
    samples = []
    from ..appearance import to_model_input

    for name in chosen:
        image, _ = to_model_input(
            read_image(root / "images" / f"{name}.tif"),
            ndim=2 if _is_2d(root / "images" / f"{name}.tif") else 3,
            in_channels=1,
            appearance=appearance,
            trained_on=trained_on,
        )
        labels = as_labels(read_image(root / "masks" / f"{name}.tif"))
        if image.shape[1:] != labels.shape:
            raise InputError(f"{name}: image {image.shape[1:]} and mask {labels.shape} differ")
        if normalise is not None:
            image = normalise(image)
        samples.append(Sample(name, image, labels, np.ones(labels.shape, bool)))
    if not any(s.labels.any() for s in samples):
        # Dense masks mark every unlabelled pixel as known background: trained on these a
        # network learns to find nothing, and would still be saved as a model.
        which = f"the {len(samples)} masks" if len(samples) > 1 else "the mask"
        raise InputError(
            f"{which} in {root / 'masks'}"
            + (f" for split {split!r}" if split is not None else "")
            + " hold no objects (every pixel is 0); check that the masks are the labelled "
            "objects of these images"
        )
    return samples
