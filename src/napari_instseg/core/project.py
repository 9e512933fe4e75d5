"""Project folders: images with their sparse annotations and predictions, kept on disk.

A project is one zarr (v3) group on disk, ``NAME.zarr``, so annotations survive a crash of
napari or of a training run and come back when the same image is opened again. Each image is
an *entry* under ``entries/KEY`` where ``KEY`` is derived from the image's pixels
(:func:`image_key`), so a renamed file still finds its annotations::

    NAME.zarr/                      attrs: {"napari_instseg_project": 1}
      entries/KEY/                  attrs: name, shape, dtype, image_sha256
        image                       the image as it was annotated (optional copy)
        annotations                 uint32: 0 unknown, BACKGROUND_LABEL painted background,
                                    other ids annotated objects
        predictions                 uint32 labels, attrs: model, backend, knobs

zarr's local store replaces each chunk file atomically, so an interrupted save leaves every
chunk either old or new, never torn; :meth:`Project.save_annotations` can write only the
region that changed, which keeps autosaving cheap on large images.

Every stored array keeps a checksum of each chunk it wrote (attribute :data:`_CRC`), so a chunk
file that was deleted (zarr would read it back as "not annotated"), truncated or replaced is
reported as damage, naming the file, instead of passing for an empty annotation. A save first
forgets the checksums of the chunks it touches and records them again once they are written,
so an interrupted save is never mistaken for damage.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import LABEL_DTYPE, InputError, as_labels

PROJECT_FORMAT = 1
_MARK = "napari_instseg_project"
#: Images larger than this are identified by a sample of their pixels, not all of them.
_FULL_HASH_BYTES = 256 * 2**20
#: Array attribute holding ``{"i.j": crc32}`` of every chunk written since checksums exist.
_CRC = "napari_instseg_chunk_crc32"


def image_key(image: np.ndarray) -> str:
    """A short stable id for an image's pixels (shape, dtype and content).

    Images up to 256 MiB are hashed whole; larger ones by their shape, dtype and an even
    sample of about 256 MiB of their pixels, so that opening a huge image stays quick.
    """
    arr = np.asarray(image)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype.str}".encode())
    if arr.nbytes > _FULL_HASH_BYTES:
        step = int(np.ceil(arr.nbytes / _FULL_HASH_BYTES))
        arr = arr.reshape(-1)[::step]
    h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()[:20]


def default_project_path() -> Path:
    """The project folder used unless the user picks one: ``NAPARI_INSTSEG_PROJECT`` or
    ``~/.napari-instseg/projects/annotations.zarr``."""
    env = os.environ.get("NAPARI_INSTSEG_PROJECT")
    if env:
        return Path(env)
    return Path.home() / ".napari-instseg" / "projects" / "annotations.zarr"


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    edge = 256 if len(shape) <= 2 else 64
    return tuple(max(1, min(s, edge)) for s in shape)


def _chunk_slices(arr, coords: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(c * n, min((c + 1) * n, s))
        for c, n, s in zip(coords, arr.chunks, arr.shape, strict=True)
    )


def _touched_chunks(arr, window: tuple[slice, ...]) -> list[tuple[int, ...]]:
    """Coordinates of the chunks of ``arr`` that ``window`` (slices with steps of 1) writes."""
    ranges = []
    for sl, n, s in zip(window, arr.chunks, arr.shape, strict=True):
        start, stop, _ = sl.indices(s)
        if stop <= start:
            return []
        ranges.append(range(start // n, (stop - 1) // n + 1))
    return list(itertools.product(*ranges))


def _crc(block: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(block).data)


class _Damaged(Exception):
    def __init__(self, coords: tuple[int, ...], why: str):
        super().__init__(why)
        self.coords, self.why = coords, why


def _write_checked(arr, window: tuple[slice, ...], values: np.ndarray) -> None:
    """``arr[window] = values``, keeping the checksums of the chunks written up to date."""
    window = tuple(window) + (slice(None),) * (arr.ndim - len(window))
    touched = _touched_chunks(arr, window)
    sums = dict(arr.attrs.get(_CRC, {}))
    names = [".".join(map(str, c)) for c in touched]
    if any(n in sums for n in names):  # forgotten first: a kill mid-save is not damage
        for n in names:
            sums.pop(n, None)
        arr.attrs[_CRC] = sums
    arr[window] = values
    for coords, name in zip(touched, names, strict=True):
        sums[name] = _crc(arr[_chunk_slices(arr, coords)])
    arr.attrs[_CRC] = sums


def _read_checked(arr) -> np.ndarray:
    """The whole of ``arr``; raises :class:`_Damaged` for a chunk that cannot be decoded or
    does not hold what its checksum says (a deleted chunk reads back as fill values)."""
    sums = dict(arr.attrs.get(_CRC, {}))
    try:
        data = np.asarray(arr[...])
    except Exception:  # zarr's codecs raise many kinds of errors: find the chunk that fails
        for coords in itertools.product(*(range(n) for n in arr.cdata_shape)):
            try:
                arr[_chunk_slices(arr, coords)]
            except Exception as err:
                raise _Damaged(coords, f"cannot be read ({type(err).__name__})") from None
        raise
    for name, crc in sums.items():
        coords = tuple(int(c) for c in name.split("."))
        if _crc(data[_chunk_slices(arr, coords)]) != crc:
            raise _Damaged(coords, "is missing or changed")
    return data


@dataclass(frozen=True)
class ProjectEntry:
    """One image of a project and what is stored for it."""

    key: str
    name: str
    shape: tuple[int, ...]
    has_image: bool
    has_annotations: bool
    has_predictions: bool


def is_project(path: str | Path) -> bool:
    """Whether ``path`` is a project folder written by :class:`Project`."""
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return False
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return _MARK in attrs


class Project:
    """A project folder; created when missing (``create=True``).

    Examples
    --------
    >>> project = Project(tmp_path / "cells.zarr")                     # doctest: +SKIP
    >>> key = project.add_image(image, name="cells")                   # doctest: +SKIP
    >>> project.save_annotations(key, annotation)                      # doctest: +SKIP
    >>> Project(tmp_path / "cells.zarr").load_annotations(key)         # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, create: bool = True):
        import zarr

        self.path = Path(path)
        if self.path.exists():
            if not is_project(self.path):
                raise InputError(
                    f"{self.path} exists but is not a napari-instseg project folder; "
                    "choose a new folder name or an existing project"
                )
            self._root = zarr.open_group(self.path, mode="r+")
        elif create:
            self._root = zarr.open_group(self.path, mode="w", zarr_format=3)
            self._root.attrs[_MARK] = PROJECT_FORMAT
        else:
            raise FileNotFoundError(f"no project folder at {self.path}")

    # -- entries ---------------------------------------------------------------------------
    def _entry(self, key: str, *, create: bool = False):
        entries = self._root.require_group("entries")
        if key in entries:
            return entries[key]
        if not create:
            raise KeyError(f"no image {key!r} in project {self.path}")
        return entries.create_group(key)

    def entries(self) -> list[ProjectEntry]:
        """Every image of the project, by name."""
        if "entries" not in self._root:
            return []
        out = []
        for key, group in self._root["entries"].groups():
            attrs = dict(group.attrs)
            out.append(
                ProjectEntry(
                    key=key,
                    name=str(attrs.get("name", key)),
                    shape=tuple(attrs.get("shape", ())),
                    has_image="image" in group,
                    has_annotations="annotations" in group,
                    has_predictions="predictions" in group,
                )
            )
        return sorted(out, key=lambda e: (e.name, e.key))

    def has(self, key: str) -> bool:
        return "entries" in self._root and key in self._root["entries"]

    def add_image(
        self,
        image: np.ndarray,
        *,
        name: str,
        shape: tuple[int, ...] | None = None,
        store_image: bool = True,
    ) -> str:
        """Register ``image`` (once) and return its key.

        ``shape`` is the shape of its labels (the image's spatial shape); by default the
        image's own shape. With ``store_image`` a copy of the pixels is kept, so the reader
        can reopen the project without the original file.
        """
        image = np.asarray(image)
        key = image_key(image)
        group = self._entry(key, create=True)
        group.attrs.update(
            {
                "name": name,
                "shape": list(shape or image.shape),
                "dtype": image.dtype.str,
                "image_shape": list(image.shape),
            }
        )
        if store_image and "image" not in group:
            arr = group.create_array(
                "image", shape=image.shape, dtype=image.dtype, chunks=_chunks(image.shape)
            )
            _write_checked(arr, tuple(slice(None) for _ in image.shape), image)
        return key

    def entry_attrs(self, key: str) -> dict[str, Any]:
        return dict(self._entry(key).attrs)

    def load_image(self, key: str) -> np.ndarray | None:
        group = self._entry(key)
        return self._read(key, group, "image") if "image" in group else None

    def _read(self, key: str, group, field: str) -> np.ndarray:
        """A stored array of entry ``key``, with a clear message when its files are damaged."""
        arr = group[field]
        try:
            return _read_checked(arr)
        except _Damaged as err:
            chunk = self.path / "entries" / key / field / arr.metadata.encode_chunk_key(err.coords)
            name = dict(group.attrs).get("name", key)
            raise InputError(
                f"the project {self.path} is damaged: a chunk file of the {field} of {name!r} "
                f"{err.why} ({chunk}); restore the project folder from a backup (nothing was "
                "changed in it)"
            ) from None

    # -- annotations -----------------------------------------------------------------------
    def _labels_array(self, key: str, field: str, shape: tuple[int, ...]):
        group = self._entry(key)
        if field in group:
            arr = group[field]
            if tuple(arr.shape) != tuple(shape):
                raise InputError(
                    f"stored {field} have shape {tuple(arr.shape)}, the layer has {tuple(shape)}"
                )
            return arr
        return group.create_array(
            field, shape=shape, dtype=LABEL_DTYPE, chunks=_chunks(shape), fill_value=0
        )

    def save_annotations(
        self,
        key: str,
        labels: np.ndarray,
        *,
        region: tuple[slice, ...] | None = None,
    ) -> None:
        """Write the annotation of image ``key``; only ``region`` of it when given."""
        labels = as_labels(labels)
        arr = self._labels_array(key, "annotations", labels.shape)
        window = region if region is not None else tuple(slice(None) for _ in labels.shape)
        _write_checked(arr, window, labels[window])

    def load_annotations(self, key: str) -> np.ndarray | None:
        """The stored annotation of image ``key``, or None."""
        if not self.has(key):
            return None
        group = self._entry(key)
        return self._read(key, group, "annotations") if "annotations" in group else None

    # -- predictions -----------------------------------------------------------------------
    def save_predictions(
        self, key: str, labels: np.ndarray, *, metadata: dict[str, Any] | None = None
    ) -> None:
        """Store predicted labels of image ``key`` with how they were made."""
        labels = as_labels(labels)
        arr = self._labels_array(key, "predictions", labels.shape)
        _write_checked(arr, tuple(slice(None) for _ in labels.shape), labels)
        arr.attrs.update(json.loads(json.dumps(metadata or {}, default=str)))

    def load_predictions(self, key: str) -> tuple[np.ndarray, dict] | None:
        """Stored predictions of image ``key`` and their metadata, or None."""
        if not self.has(key):
            return None
        group = self._entry(key)
        if "predictions" not in group:
            return None
        arr = group["predictions"]
        attrs = {k: v for k, v in dict(arr.attrs).items() if k != _CRC}
        return self._read(key, group, "predictions"), attrs
