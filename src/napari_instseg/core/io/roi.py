"""ImageJ/Fiji ROI sets: labels as a ``.zip`` of one ROI per object, for Fiji's ROI Manager.

Written with the ``roifile`` package. Each object becomes one ROI named by its label id (in
3D one ROI per Z plane the object is in, named ``ID-zSLICE``), whose outline follows the
object's pixel edges (:mod:`napari_instseg.core.outlines`), so Fiji's Measure gives the
object's pixel area exactly:

* an object in one piece without holes is a *traced* polygon ROI, what Fiji's wand tool and
  Analyze Particles make;
* an object with holes or in several pieces is one *composite* ROI (an ImageJ ``ShapeRoi``,
  what Fiji makes of a selection with holes or several pieces), so that it is still one entry
  in the ROI Manager, named by its id, and its holes are excluded from measurements. Its
  outer rings and holes run in opposite directions, so Fiji fills it the same under either
  winding rule.

Each ROI also carries the id (and in 3D the plane) as ROI properties (``label``, ``z``), which
macros read with ``Roi.getProperty("label")``. In 3D the ROI's stack ``position`` is its Z
slice (1-based, as Fiji counts slices), which a plain Z stack such as our 3D TIFF uses.

Examples
--------
>>> write_imagej_rois("cells_RoiSet.zip", labels)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

# The staging and label checks of the other label writers, so every export behaves the same.
from ..arrays import spatial_labels
from ..outlines import Polygon, label_outlines
from .staging import staged_output

_log = logging.getLogger(__name__)

#: Largest coordinate ImageJ stores as a 16-bit integer; beyond it we add float coordinates.
_MAX_INT_COORD = 60535
# PathIterator segment types of a composite ROI's shape array
_MOVETO, _LINETO, _CLOSE = 0, 1, 4


def polygons_to_roi(polygons: list[Polygon], *, name: str, z: int | None = None):
    """One ImageJ ROI for one object: traced polygon, or composite for holes and pieces.

    Parameters
    ----------
    polygons : list of Polygon
        The object's parts as from :func:`~napari_instseg.core.outlines.label_outlines`.
    name : str
        ROI name.
    z : int, optional
        0-based Z plane; stored as the ROI's 1-based stack position.

    Returns
    -------
    roifile.ImagejRoi
    """
    from roifile import ROI_OPTIONS, ROI_TYPE, ImagejRoi

    roi = ImagejRoi()
    roi.name = name
    rings = [ring for polygon in polygons for ring in polygon]
    points = np.concatenate(rings)
    left, top = (int(v) for v in points.min(axis=0))
    right, bottom = (int(v) for v in points.max(axis=0))
    roi.left, roi.top, roi.right, roi.bottom = left, top, right, bottom
    if len(rings) == 1:
        ring = rings[0]
        roi.roitype = ROI_TYPE.TRACED
        roi.n_coordinates = len(ring)
        roi.integer_coordinates = (ring - [left, top]).astype(np.int32)
        if right > _MAX_INT_COORD or bottom > _MAX_INT_COORD:
            roi.options |= ROI_OPTIONS.SUB_PIXEL_RESOLUTION
            roi.subpixel_coordinates = ring.astype(np.float32)
    else:
        path: list[float] = []
        for ring in rings:
            path += [_MOVETO, float(ring[0, 0]), float(ring[0, 1])]
            for x, y in ring[1:].tolist():
                path += [_LINETO, float(x), float(y)]
            path.append(_CLOSE)
        roi.roitype = ROI_TYPE.RECT
        roi.multi_coordinates = np.asarray(path, dtype=np.float32)
        roi.shape_roi_size = len(path)
    if z is not None:
        roi.position = int(z) + 1
    return roi


def labels_to_rois(labels: np.ndarray) -> list:
    """ImageJ ROIs of every object of ``(Y, X)`` or ``(Z, Y, X)`` labels, by id (then Z).

    Returns
    -------
    list of roifile.ImagejRoi
        See the module docstring for names, types and positions.
    """
    labels = spatial_labels(labels)
    if labels.ndim == 2:
        rois = []
        for label_id, polygons in label_outlines(labels).items():
            roi = polygons_to_roi(polygons, name=str(label_id))
            roi.props = f"label: {label_id}\n"  # ImageJ's "key: value" lines
            rois.append(roi)
        return rois
    by_object: dict[int, list] = {}
    for z, plane in enumerate(labels):
        for label_id, polygons in label_outlines(plane).items():
            roi = polygons_to_roi(polygons, name=f"{label_id}-z{z + 1}", z=z)
            roi.props = f"label: {label_id}\nz: {z + 1}\n"
            by_object.setdefault(label_id, []).append(roi)
    return [roi for label_id in sorted(by_object) for roi in by_object[label_id]]


def write_imagej_rois(path: str | Path, labels: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write labels as an ImageJ ROI set (``.zip``) that Fiji's ROI Manager opens.

    One ROI per object (per object and Z plane in 3D), named by label id; objects with holes
    or in several pieces are composite ROIs (see the module docstring). Labels without
    objects give an empty ROI set (and a logged warning).

    Parameters
    ----------
    path : str or Path
        Target ``.zip`` file.
    labels : ndarray of int
        ``(Y, X)`` or ``(Z, Y, X)`` instance labels, 0 = background.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The written file.
    """
    rois = labels_to_rois(labels)
    if not rois:
        _log.warning("the labels have no objects: writing an empty ROI set to %s", path)
    with staged_output(path, overwrite=overwrite, folder=False) as staged:
        with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for roi in rois:
                zf.writestr(f"{roi.name}.roi", roi.tobytes())
    return Path(path)
