"""Detection-seeded watershed: instances from boxes, a foreground map and a height map.

The assembly of the All-Cell Segmenter, also called the anchor-based watershed framework
(an entry to the NeurIPS 2022 Cell Segmentation Challenge; code
``lostkevin/Cell-Segmenter``). A YOLO-style detector proposes one box per cell; a
segmentation head predicts, per pixel, a foreground probability and a "height": the distance
to the cell's border divided by (the cell's median distance + 1), so about 0 at the border,
1 at the median distance and up to ~3 in the centre of large round cells, whatever the size.

Post-processing, step by step (:func:`segment_detection_watershed`):

1. keep boxes scoring above the confidence threshold, greedy NMS (:func:`nms`), then drop
   boxes lying mostly inside another box (:func:`filter_ioa`, only under
   :data:`IOA_MAX_BOXES` boxes, as the original does);
2. a small disc at each box centre is a marker (:func:`markers_from_boxes`); marker pixels
   outside the foreground or with a height below ``t1`` are dropped;
3. watershed on ``-height`` from these markers over the core ``height >= t1`` (cells found
   by the detector); core blobs of ``height >= t2`` that no detected cell reached become
   extra markers (cells the detector missed) and grow over the rest of the core;
4. a last watershed grows all cells over the whole foreground (the border zone
   ``0 < height < t1``); small objects are removed and small holes filled;
5. refinement (:func:`refine_by_height`): a cell whose own normalised distance transform
   (:func:`height_from_labels`) disagrees with the predicted height by a mean squared
   difference above ``refine_threshold`` is dropped.

For phase-contrast (grayscale) images the original also runs an Omnipose-style model and takes
its result when it looks more confident (:func:`choose_route`); here that model is a jointly
trained flows branch, assembled by
:func:`~napari_instseg.core.assembly.flows.segment_flow_dynamics`.

Departures from the original, on purpose:
- the core regions of steps 3 are also restricted to the foreground (the original floods
  ``height >= t1`` whatever the foreground says, then cuts to the foreground at the end);
- where two marker discs overlap, the more confident box keeps the pixels (the original lets
  the later, less confident one paint over);
- NMS is exact greedy NMS over all boxes, made fast by only comparing boxes whose x-ranges
  can overlap (the original, above 20,000 candidates, first runs NMS per 512-pixel tile,
  which can keep boxes a global NMS would drop);
- the IoA filter is greedy from the largest box down, against kept boxes only (the original
  drops a box mostly inside any box, kept or not; for nested boxes both agree, and the greedy
  rule keeps one of two near-identical boxes where the original would drop both);
- for phase contrast the original's adaptive minimum size, ``min(mean area / 5, 150)``, is
  applied with ``min_size`` as a floor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from scipy import ndimage as ndi
from scipy.special import expit
from skimage.segmentation import watershed

from ..arrays import LABEL_DTYPE
from ..modality import BRIGHTFIELD, FLUORESCENCE, MODALITIES, PHASE
from .flows import FlowDynamicsConfig, segment_flow_dynamics
from .labels import fill_small_holes, finish_labels, remove_small_objects

__all__ = [
    "IOA_MAX_BOXES",
    "MODALITY_THRESHOLDS",
    "DetectionWatershedConfig",
    "choose_route",
    "detection_watershed_labels",
    "filter_ioa",
    "height_errors",
    "height_from_labels",
    "markers_from_boxes",
    "nms",
    "refine_by_height",
    "segment_detection_watershed",
    "select_boxes",
]

#: Per modality, the original's (confidence threshold, NMS IoU threshold).
MODALITY_THRESHOLDS: dict[str, tuple[float, float]] = {
    BRIGHTFIELD: (0.10, 0.25),
    PHASE: (0.20, 0.25),
    FLUORESCENCE: (0.25, 0.35),
}
#: The IoA filter runs only when fewer boxes than this survive NMS (as in the original).
IOA_MAX_BOXES = 2000
#: Adaptive minimum size for phase contrast: min(mean area / 5, 150) pixels.
_PHASE_MIN_SIZE_FRACTION = 0.2
_PHASE_MIN_SIZE_CAP = 150
_ROUTES = ("auto", "detection", "flows")


@dataclass(frozen=True)
class DetectionWatershedConfig:
    """Knobs of :func:`segment_detection_watershed` (the All-Cell Segmenter's defaults).

    ``modality`` picks the confidence and NMS thresholds (:data:`MODALITY_THRESHOLDS`) and
    whether the flows fallback may be taken. ``"auto"`` is meant to be resolved by the caller
    (:func:`~napari_instseg.core.modality.detect_modality`); still ``"auto"`` here, it is
    treated as phase contrast, the original's rule for single-channel images.
    """

    modality: Annotated[
        str,
        {
            "choices": ("auto", *MODALITIES),
            "tooltip": "auto / fluorescence / brightfield / phase-contrast: sets the box "
            "thresholds and allows the flows fallback (phase contrast; auto counts as phase)",
        },
    ] = "auto"
    conf_threshold: Annotated[
        float,
        {
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "box confidence cut; 0 = the modality's value",
        },
    ] = 0.0
    nms_iou: Annotated[
        float,
        {
            "advanced": True,
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "boxes overlapping a better one by more IoU are dropped; 0 = the "
            "modality's value",
        },
    ] = 0.0
    ioa_threshold: Annotated[
        float,
        {
            "advanced": True,
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "a box with more than this fraction of its area inside a larger kept "
            "box is dropped; 1 keeps all",
        },
    ] = 0.8
    fg_threshold: Annotated[
        float, {"min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "foreground probability cut"}
    ] = 0.5
    t1: Annotated[
        float,
        {
            "min": 0.0,
            "max": 3.0,
            "step": 0.05,
            "tooltip": "height of the cell core: higher splits more and drops edge markers",
        },
    ] = 0.8
    t2: Annotated[
        float,
        {
            "advanced": True,
            "min": 0.0,
            "max": 3.0,
            "step": 0.05,
            "tooltip": "height above which a core blob no box reached becomes a cell",
        },
    ] = 1.25
    marker_radius: Annotated[
        int,
        {
            "advanced": True,
            "min": 0,
            "max": 20,
            "tooltip": "radius (pixels) of the disc at each box centre",
        },
    ] = 2
    min_marker_size: Annotated[
        int,
        {
            "advanced": True,
            "min": 0,
            "max": 1000,
            "tooltip": "extra (box-less) markers smaller are dropped",
        },
    ] = 5
    min_size: Annotated[
        int,
        {
            "min": 0,
            "max": 100000,
            "tooltip": "objects smaller than this (pixels) are removed (phase contrast: at "
            "least min(mean area / 5, 150))",
        },
    ] = 10
    hole_size: Annotated[
        int,
        {
            "advanced": True,
            "min": 0,
            "max": 100000,
            "tooltip": "holes smaller than this (pixels) are filled",
        },
    ] = 10
    refine_threshold: Annotated[
        float,
        {
            "advanced": True,
            "min": 0.0,
            "max": 4.0,
            "step": 0.05,
            "tooltip": "drop cells whose height disagrees with their shape more than this "
            "(mean squared); 0 keeps all",
        },
    ] = 0.4
    route: Annotated[
        str,
        {
            "choices": _ROUTES,
            "tooltip": "auto / detection / flows: auto takes the flows result for phase "
            "contrast when it looks more confident",
        },
    ] = "auto"
    fallback_quality: Annotated[
        float,
        {
            "advanced": True,
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "take the flows result when the detection's foreground confidence is "
            "below this",
        },
    ] = 0.8
    fallback_margin: Annotated[
        float,
        {
            "advanced": True,
            "min": -1.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "take the flows result when its confidence beats the detection's by "
            "more than this",
        },
    ] = 0.05
    flow_threshold: Annotated[
        float,
        {
            "advanced": True,
            "min": 0.0,
            "max": 4.0,
            "step": 0.05,
            "tooltip": "flows fallback: drop objects whose flows disagree more than this",
        },
    ] = 0.4
    flow_mask_threshold: Annotated[
        float,
        {
            "advanced": True,
            "min": -5.0,
            "max": 5.0,
            "step": 0.1,
            "tooltip": "flows fallback: distance above which a pixel is inside",
        },
    ] = 0.0

    def __post_init__(self):
        if self.modality not in ("auto", *MODALITIES):
            raise ValueError(
                f"modality must be one of {('auto', *MODALITIES)}; got {self.modality!r}"
            )
        if self.route not in _ROUTES:
            raise ValueError(f"route must be one of {_ROUTES}; got {self.route!r}")
        for name in ("conf_threshold", "nms_iou", "ioa_threshold", "fg_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]; got {value}")
        if not 0.0 <= self.fallback_quality <= 1.0:
            raise ValueError(f"fallback_quality must lie in [0, 1]; got {self.fallback_quality}")
        if not -1.0 <= self.fallback_margin <= 1.0:
            raise ValueError(f"fallback_margin must lie in [-1, 1]; got {self.fallback_margin}")
        for name in ("t1", "t2", "refine_threshold", "flow_threshold"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value}")
        if not np.isfinite(self.flow_mask_threshold):
            raise ValueError(f"flow_mask_threshold must be finite; got {self.flow_mask_threshold}")
        for name in ("marker_radius", "min_marker_size", "min_size", "hole_size"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0; got {value}")


# ---------------------------------------------------------------------------------------------
# boxes


def _as_boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) [y0, x0, y1, x1]; got shape {boxes.shape}")
    return boxes


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _intersections(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    dy = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    dx = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    return np.clip(dy, 0, None) * np.clip(dx, 0, None)


def nms(boxes, scores, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score (ties: input order); a box is kept unless it
    overlaps an already kept box with an intersection over union above ``iou``.

    Parameters
    ----------
    boxes : array (N, 4)
        ``[y0, x0, y1, x1]`` in pixels (edges, so the area is ``(y1 - y0) * (x1 - x0)``).
    scores : array (N,)
        Confidences.
    iou : float
        Suppression threshold.

    Returns
    -------
    ndarray of intp
        Indices of the kept boxes into ``boxes``, best score first.

    Notes
    -----
    Exact greedy NMS. Only boxes whose x-ranges can overlap a kept box are compared with it
    (boxes sorted by ``x0``, window = widest box), so the work follows the number of kept
    boxes times their neighbours, not ``N**2``.
    """
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, np.float64).ravel()
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, np.intp)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    areas = _areas(b)
    by_x0 = np.argsort(b[:, 1], kind="stable")
    x0_sorted = b[by_x0, 1]
    widest = float(np.max(b[:, 3] - b[:, 1]))
    suppressed = np.zeros(n, bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        lo = np.searchsorted(x0_sorted, b[i, 1] - widest, side="left")
        hi = np.searchsorted(x0_sorted, b[i, 3], side="right")
        cand = by_x0[lo:hi]
        cand = cand[cand > i]
        cand = cand[~suppressed[cand]]
        if cand.size == 0:
            continue
        inter = _intersections(b[i], b[cand])
        union = areas[i] + areas[cand] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        suppressed[cand[overlap > iou]] = True
    return order[np.asarray(keep, np.intp)]


def filter_ioa(boxes, threshold: float) -> np.ndarray:
    """Drop boxes lying mostly inside another box (intersection over area).

    Boxes are visited from the largest area down (ties: input order). A box is dropped when
    more than ``threshold`` of its own area lies inside one box kept before it, so of a
    nested pair the smaller (inner) box goes, and of two near-identical boxes the first one
    stays.

    Parameters
    ----------
    boxes : array (N, 4)
        ``[y0, x0, y1, x1]`` in pixels.
    threshold : float
        Fraction of a box's area; ``>= 1`` keeps every box.

    Returns
    -------
    ndarray of intp
        Indices of the kept boxes, in input order.
    """
    boxes = _as_boxes(boxes)
    n = boxes.shape[0]
    if n < 2 or threshold >= 1.0:
        return np.arange(n, dtype=np.intp)
    areas = _areas(boxes)
    order = np.argsort(-areas, kind="stable")
    b, a = boxes[order], areas[order]
    kept = np.zeros(n, bool)
    chunk = max(1, 4_000_000 // n)  # rows of the pairwise matrix held at once
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        top = b[rows, None, :]
        dy = np.minimum(top[..., 2], b[None, :, 2]) - np.maximum(top[..., 0], b[None, :, 0])
        dx = np.minimum(top[..., 3], b[None, :, 3]) - np.maximum(top[..., 1], b[None, :, 1])
        inter = np.clip(dy, 0, None) * np.clip(dx, 0, None)
        inside = inter > threshold * a[rows, None]
        inside &= np.arange(n)[None, :] < rows[:, None]  # only boxes visited before
        contained = inside.any(axis=1)
        kept[rows[~contained]] = True
        # in visiting order: a box's partners come before it, so their fate is already known
        for r in np.flatnonzero(contained):
            kept[rows[r]] = not kept[inside[r]].any()
    return np.sort(order[kept])


def select_boxes(
    boxes,
    scores,
    *,
    conf_threshold: float,
    nms_iou: float,
    ioa_threshold: float,
    max_ioa_boxes: int = IOA_MAX_BOXES,
) -> np.ndarray:
    """The boxes that seed cells: above ``conf_threshold``, after NMS and the IoA filter.

    Returns the kept boxes, shape (K, 4), best score first. The IoA filter runs only when
    fewer than ``max_ioa_boxes`` boxes survive NMS (the original's limit).
    """
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, np.float64).ravel()
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} box scores")
    confident = np.flatnonzero(scores > conf_threshold)
    boxes, scores = boxes[confident], scores[confident]
    boxes = boxes[nms(boxes, scores, nms_iou)]
    if boxes.shape[0] < max_ioa_boxes:
        boxes = boxes[filter_ioa(boxes, ioa_threshold)]  # keeps the score order
    return boxes


def markers_from_boxes(boxes, shape, *, radius: int) -> np.ndarray:
    """A filled disc of ``radius`` pixels at each box centre, labelled by box index + 1.

    The centre of ``[y0, x0, y1, x1]`` is pixel ``(floor((y0 + y1) / 2), floor((x0 + x1) / 2))``,
    clipped to the image; disc pixels off the image are dropped. Where discs overlap, the
    box listed first (the more confident one after :func:`select_boxes`) keeps the pixel.

    Returns
    -------
    ndarray of uint32, ``shape``
    """
    boxes = _as_boxes(boxes)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise ValueError(f"markers_from_boxes works on 2D images; got shape {shape}")
    markers = np.zeros(shape, LABEL_DTYPE)
    n = boxes.shape[0]
    if n == 0 or markers.size == 0:
        return markers
    cy = np.clip(np.floor((boxes[:, 0] + boxes[:, 2]) / 2), 0, shape[0] - 1).astype(np.intp)
    cx = np.clip(np.floor((boxes[:, 1] + boxes[:, 3]) / 2), 0, shape[1] - 1).astype(np.intp)
    r = int(radius)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = dy**2 + dx**2 <= r * r
    dy, dx = dy[disc], dx[disc]
    yy = (cy[:, None] + dy[None, :]).ravel()
    xx = (cx[:, None] + dx[None, :]).ravel()
    ids = np.repeat(np.arange(1, n + 1, dtype=np.int64), dy.size)
    inside = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
    flat = np.full(markers.size, n + 1, np.int64)
    np.minimum.at(flat, yy[inside] * shape[1] + xx[inside], ids[inside])
    flat[flat == n + 1] = 0
    return flat.reshape(shape).astype(LABEL_DTYPE)


# ---------------------------------------------------------------------------------------------
# height


def _object_slices(labels: np.ndarray):
    """(id, slice grown by one pixel within the image) for each object present."""
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        yield (
            i,
            tuple(
                slice(max(s.start - 1, 0), min(s.stop + 1, n))
                for s, n in zip(sl, labels.shape, strict=True)
            ),
        )


def height_from_labels(labels: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
    """The All-Cell Segmenter's height: per object, its distance transform / (median + 1).

    The distance is Euclidean, to the nearest pixel outside the object (other objects
    included, so touching objects dip to the border value between them); the image edge is
    not a border. Pixels at the border get ``1 / (median + 1)``; background is 0. Works in
    2D and 3D.

    Parameters
    ----------
    labels : ndarray of int
        Objects, 0 = background.
    mask : ndarray of bool, optional
        Pixels outside it are unknown, like those beyond the image edge: they are no border
        (distances run through them), so an object cut by the mask keeps its heights.

    Returns
    -------
    ndarray of float32, same shape as ``labels``
    """
    labels = np.asarray(labels)
    outside = None if mask is None else ~np.asarray(mask, bool)
    height = np.zeros(labels.shape, np.float32)
    for i, sl in _object_slices(labels):
        inside = labels[sl] == i
        free = inside if outside is None else inside | outside[sl]
        if free.all():  # nothing but the object around it: measure to the crop's edge
            dist = ndi.distance_transform_edt(np.pad(free, 1))[(slice(1, -1),) * free.ndim]
        else:
            dist = ndi.distance_transform_edt(free)
        values = dist[inside]
        crop = height[sl]
        crop[inside] = values / (np.median(values) + 1.0)
    return height


def height_errors(
    labels: np.ndarray, height: np.ndarray, *, mask: np.ndarray | None = None
) -> np.ndarray:
    """Per object, the mean over its pixels of ``(height - height_from_labels(labels))**2``;
    index = label id (entry 0 unused). ``mask`` as in :func:`height_from_labels`."""
    labels = np.asarray(labels)
    err = (np.asarray(height, np.float64) - height_from_labels(labels, mask=mask)) ** 2
    n = int(labels.max()) + 1 if labels.size else 1
    sums = np.bincount(labels.ravel(), weights=err.ravel(), minlength=n)
    counts = np.bincount(labels.ravel(), minlength=n)
    return sums / np.maximum(counts, 1)


def refine_by_height(
    labels: np.ndarray, height: np.ndarray, threshold: float, *, mask: np.ndarray | None = None
) -> np.ndarray:
    """Set objects whose :func:`height_errors` exceed ``threshold`` to background; 0 keeps all.

    ``mask``: pixels outside it are no border (:func:`height_from_labels`), so an object cut
    by the mask is judged on the shape it could have, not on the cut."""
    if threshold <= 0 or not labels.any():
        return labels
    bad = height_errors(labels, height, mask=mask) > threshold
    bad[0] = False
    if not bad.any():
        return labels
    return np.where(bad[labels], 0, labels).astype(labels.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# assembly


def detection_watershed_labels(
    foreground: np.ndarray,
    height: np.ndarray,
    boxes,
    config: DetectionWatershedConfig | None = None,
    *,
    adaptive_min_size: bool = False,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Cells from box markers and a height map by three watersheds (see the module notes).

    Parameters
    ----------
    foreground : ndarray of bool (Y, X)
        Pixels that belong to some cell (thresholded probability, already masked).
    height : ndarray (Y, X)
        Predicted normalised distance (:func:`height_from_labels` is the target).
    boxes : array (K, 4)
        Selected boxes, most confident first (:func:`select_boxes`).
    config : DetectionWatershedConfig, optional
        The knobs read here (defaults when omitted): ``t1``, the height of the cell cores
        that the first two watersheds flood; ``t2``, the height above which a core blob that
        no detected cell reached seeds a cell; ``marker_radius``, the radius of the disc
        markers, and ``min_marker_size``: extra markers with fewer pixels are dropped;
        ``min_size`` and ``hole_size``: objects with fewer pixels are removed, enclosed holes
        with fewer are filled; ``refine_threshold``, the :func:`refine_by_height` threshold
        (0 keeps every cell).
    adaptive_min_size : bool
        Raise the minimum size to ``min(mean area / 5, 150)`` (the original, for phase
        contrast).
    mask : ndarray of bool (Y, X), optional
        Pixels allowed to be foreground: filled holes stay inside it, and its edge is no
        cell border for the refinement.

    Returns
    -------
    ndarray of uint32 (Y, X)
        0 = background, cells 1..N.
    """
    foreground = np.asarray(foreground, bool)
    height = np.asarray(height, np.float32)
    if foreground.ndim != 2 or height.shape != foreground.shape:
        raise ValueError(
            f"foreground and height must be 2D of one shape; got {foreground.shape} and "
            f"{height.shape}"
        )
    config = DetectionWatershedConfig() if config is None else config
    labels = np.zeros(foreground.shape, LABEL_DTYPE)
    if not foreground.any():
        return labels
    relief = -height
    core = foreground & (height >= config.t1)
    markers = markers_from_boxes(boxes, foreground.shape, radius=config.marker_radius)
    markers[~core] = 0
    from_boxes = np.zeros_like(labels)
    if markers.any():
        from_boxes = watershed(relief, markers, mask=core).astype(LABEL_DTYPE)
    # cores the detector missed
    extra, _ = ndi.label(
        core & (height >= config.t2) & (from_boxes == 0), structure=np.ones((3, 3))
    )
    extra = remove_small_objects(extra.astype(LABEL_DTYPE), config.min_marker_size)
    seeds = from_boxes
    if extra.any():
        missed = watershed(relief, extra, mask=core & (from_boxes == 0)).astype(LABEL_DTYPE)
        seeds = np.where(missed > 0, missed + from_boxes.max(), from_boxes)
    if not seeds.any():
        return labels
    labels = watershed(relief, seeds, mask=foreground).astype(LABEL_DTYPE)
    smallest = config.min_size
    if adaptive_min_size:
        areas = np.bincount(labels.ravel())[1:]
        areas = areas[areas > 0]
        adaptive = min(_PHASE_MIN_SIZE_FRACTION * areas.mean(), _PHASE_MIN_SIZE_CAP)
        smallest = max(config.min_size, int(np.ceil(adaptive)))
    labels = remove_small_objects(labels, smallest)
    labels = fill_small_holes(labels, config.hole_size)
    if mask is not None:
        mask = np.asarray(mask, bool)
        labels[~mask] = 0
    labels = refine_by_height(labels, height, config.refine_threshold, mask=mask)
    return finish_labels(labels, smallest)


# ---------------------------------------------------------------------------------------------
# routing


def _quality(probability: np.ndarray, mask: np.ndarray | None) -> float:
    """Mean probability over the pixels above 0.5 (inside ``mask``); 0 when there are none."""
    confident = probability > 0.5
    if mask is not None:
        confident &= mask
    return float(probability[confident].mean()) if confident.any() else 0.0


def _config(config) -> DetectionWatershedConfig:
    if config is None:
        return DetectionWatershedConfig()
    if isinstance(config, Mapping):
        return DetectionWatershedConfig(**config)
    return config


def choose_route(
    arrays: Mapping[str, np.ndarray], config=None, *, mask: np.ndarray | None = None
) -> dict:
    """Which result :func:`segment_detection_watershed` returns, and why.

    With ``route="auto"``, only for phase contrast (and unresolved ``"auto"`` modality) and
    only when the flows arrays are there: the flows result is taken when the detection
    quality is below ``fallback_quality`` or the flows quality beats it by more than
    ``fallback_margin``. Quality = mean probability over pixels above 0.5 (detection:
    ``foreground``; flows: sigmoid of ``distance``), inside ``mask`` when given; 0 when no
    pixel is above 0.5. ``route="detection"`` / ``"flows"`` force the choice.

    Parameters
    ----------
    arrays : mapping
        ``foreground`` and, for the fallback, ``flow`` and ``distance``.
    config : DetectionWatershedConfig or dict, optional
        Defaults when omitted.
    mask : ndarray of bool, optional
        Pixels allowed to be foreground.

    Returns
    -------
    dict
        ``modality`` (resolved), ``route`` ("detection" or "flows"), ``conf_threshold`` and
        ``nms_iou`` (the values used), ``quality_detection``, ``quality_flows`` (None without
        flows arrays) and ``reason``.
    """
    config = _config(config)
    modality = PHASE if config.modality == "auto" else config.modality
    default_conf, default_iou = MODALITY_THRESHOLDS[modality]
    mask = None if mask is None else np.asarray(mask, bool)
    q_det = _quality(np.asarray(arrays["foreground"], np.float32), mask)
    has_flows = "flow" in arrays and "distance" in arrays
    q_flow = None
    if has_flows:
        q_flow = _quality(expit(np.asarray(arrays["distance"], np.float32)), mask)
    if config.route == "flows":
        if not has_flows:
            raise ValueError("route 'flows' needs the arrays 'flow' and 'distance'")
        route, reason = "flows", "forced"
    elif config.route == "detection":
        route, reason = "detection", "forced"
    elif modality != PHASE:
        route, reason = "detection", f"no flows fallback for {modality}"
    elif not has_flows:
        route, reason = "detection", "no flows arrays to fall back on"
    elif q_det < config.fallback_quality:
        route = "flows"
        reason = f"detection quality {q_det:.3f} < {config.fallback_quality}"
    elif q_flow - q_det > config.fallback_margin:
        route = "flows"
        reason = (
            f"flows quality {q_flow:.3f} beats detection {q_det:.3f} by more than "
            f"{config.fallback_margin}"
        )
    else:
        route, reason = "detection", "detection quality is good enough"
    return {
        "modality": modality,
        "route": route,
        "conf_threshold": config.conf_threshold or default_conf,
        "nms_iou": config.nms_iou or default_iou,
        "quality_detection": q_det,
        "quality_flows": q_flow,
        "reason": reason,
    }


# ---------------------------------------------------------------------------------------------
# the back-end


def segment_detection_watershed(
    arrays: Mapping[str, np.ndarray],
    config: DetectionWatershedConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Cells seeded by detected boxes and grown over a height map (All-Cell Segmenter).

    Parameters
    ----------
    arrays : mapping
        ``foreground`` (Y, X) probability, ``height`` (Y, X) normalised distance,
        ``boxes`` (N, 4) ``[y0, x0, y1, x1]`` pixels and ``box_scores`` (N,); optionally
        ``flow`` (2, Y, X) and ``distance`` (Y, X) of a flows branch for the fallback.
    config : DetectionWatershedConfig, optional
        The knobs (defaults when omitted); the route taken is given by :func:`choose_route`.
        The flows fallback runs
        :func:`~napari_instseg.core.assembly.flows.segment_flow_dynamics` with
        ``mask_threshold=flow_mask_threshold``, ``flow_threshold`` and ``min_size``, its
        other knobs at their defaults.
    mask : ndarray of bool, optional
        Pixels allowed to be foreground.
    rng : numpy.random.Generator, optional
        Unused (the result is deterministic); accepted for the back-end contract.

    Returns
    -------
    ndarray of uint32 (Y, X)
        0 = background, cells 1..N.
    """
    config = DetectionWatershedConfig() if config is None else config
    probability = np.asarray(arrays["foreground"], np.float32)
    height = np.asarray(arrays["height"], np.float32)
    if probability.ndim != 2:
        raise ValueError(
            f"detection_watershed works on 2D images only; got foreground of shape "
            f"{probability.shape}"
        )
    if height.shape != probability.shape:
        raise ValueError(f"height shape {height.shape} differs from {probability.shape}")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != probability.shape:
            raise ValueError(f"mask shape {mask.shape} differs from {probability.shape}")
    report = choose_route(arrays, config, mask=mask)
    if report["route"] == "flows":
        flows = FlowDynamicsConfig(
            mask_threshold=config.flow_mask_threshold,
            flow_threshold=config.flow_threshold,
            min_size=config.min_size,
        )
        return segment_flow_dynamics(arrays, flows, mask=mask, rng=rng)
    foreground = probability > config.fg_threshold
    if mask is not None:
        foreground &= mask
    boxes = select_boxes(
        arrays["boxes"],
        arrays["box_scores"],
        conf_threshold=report["conf_threshold"],
        nms_iou=report["nms_iou"],
        ioa_threshold=config.ioa_threshold,
    )
    return detection_watershed_labels(
        foreground,
        height,
        boxes,
        config,
        adaptive_min_size=report["modality"] == PHASE,
        mask=mask,
    )
