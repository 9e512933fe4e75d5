"""Instance segmentation metrics for label images.

A label image is an integer array (2D or 3D; any dimensionality works) in which
0 is background and every other value identifies one object. Ids need not be
consecutive and may be arbitrarily large (for example ``2**40``); they are
relabelled to ``1..n`` internally.

All metrics start from the matrix of intersection-over-union (IoU) values
between every ground-truth and every predicted object, which is computed once
from a joint histogram of the two label images (:func:`iou_matrix`). Objects are
then matched one-to-one (:func:`match_instances`) and the usual scores are
derived from the counts of true positives (TP), false positives (FP) and false
negatives (FN).

Conventions for empty images (no objects in the ground truth and/or the
prediction) are the same for every score: when both images are empty the score
is 1.0 (nothing to find and nothing wrongly found); when exactly one of them is
empty every score is 0.0. In particular ``precision`` is 0.0 when nothing was
predicted but there were objects to find, and ``recall`` is 0.0 when there was
nothing to find but something was predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment

from .arrays import InputError

__all__ = [
    "DSB_THRESHOLDS",
    "Matching",
    "average_precision_dsb",
    "evaluate_pair",
    "f1",
    "f1_challenge",
    "iou_matrix",
    "match_instances",
    "mean_average_precision_dsb",
    "precision",
    "recall",
    "remove_border_objects",
    "summarise",
    "symmetric_best_dice",
]

#: IoU thresholds 0.50, 0.55, ..., 0.95 of the DSB2018 / COCO-style mean AP.
#: Written as literals so that, e.g., an IoU of exactly 3/5 passes the 0.6 threshold
#: (``np.arange(0.5, 1.0, 0.05)`` gives values a few ulps off the decimal ones).
DSB_THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)

# Above this many (true x predicted) object pairs the joint histogram is built by
# sorting the pair codes instead of with a dense ``np.bincount``.
_MAX_DENSE_BINS = 1 << 24

# Keys of ``evaluate_pair`` rows that ``summarise`` adds up instead of averaging.
_SUMMED_KEYS = ("n_true", "n_pred")


@dataclass(frozen=True, eq=False)
class Matching:
    """Result of a one-to-one matching between ground-truth and predicted objects.

    Attributes
    ----------
    iou_threshold : float
        Smallest IoU for which a pair could be matched.
    tp : int
        Number of matched pairs (true positives).
    fp : int
        Number of predicted objects left unmatched (false positives).
    fn : int
        Number of ground-truth objects left unmatched (false negatives).
    n_true : int
        Number of ground-truth objects.
    n_pred : int
        Number of predicted objects.
    true_ids : numpy.ndarray
        Ground-truth ids of the matched pairs, shape ``(tp,)``, in increasing order.
    pred_ids : numpy.ndarray
        Predicted ids matched to ``true_ids``, shape ``(tp,)``.
    ious : numpy.ndarray
        IoU of each matched pair, shape ``(tp,)``, float64.
    """

    iou_threshold: float
    tp: int
    fp: int
    fn: int
    n_true: int
    n_pred: int
    true_ids: NDArray[np.integer]
    pred_ids: NDArray[np.integer]
    ious: NDArray[np.float64]


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def _as_labels(labels: ArrayLike, name: str) -> NDArray[np.integer]:
    """Return ``labels`` as a non-negative integer array, or raise InputError (a ValueError)."""
    arr = np.asarray(labels)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise InputError(f"{name} must be an integer label image, got dtype {arr.dtype}")
    if arr.ndim < 1:
        raise InputError(f"{name} must be an image (2D or 3D array), got a 0-d array")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise InputError(f"{name} must not contain negative labels (min is {arr.min()})")
    return arr


def _check_pair(
    labels_true: ArrayLike, labels_pred: ArrayLike
) -> tuple[NDArray[np.integer], NDArray[np.integer]]:
    """Validate a ground-truth / prediction pair of label images."""
    true = _as_labels(labels_true, "labels_true")
    pred = _as_labels(labels_pred, "labels_pred")
    if true.shape != pred.shape:
        raise InputError(
            f"labels_true and labels_pred must have the same shape, "
            f"got labels_true.shape={true.shape} and labels_pred.shape={pred.shape}"
        )
    return true, pred


def _check_threshold(iou_threshold: float) -> float:
    """Validate one IoU threshold, which must lie in (0, 1]."""
    t = float(iou_threshold)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    return t


def _check_thresholds(thresholds: float | Sequence[float] | ArrayLike) -> list[float]:
    """Validate a non-empty collection of IoU thresholds."""
    values = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1D sequence, got {thresholds!r}")
    return [_check_threshold(t) for t in values.tolist()]


# ---------------------------------------------------------------------------
# IoU matrix
# ---------------------------------------------------------------------------


def _relabel(flat: NDArray[np.integer]) -> tuple[NDArray[np.intp], NDArray[np.integer], NDArray]:
    """Map the ids of a flat label array to ``1..n`` (0 stays background).

    Returns the relabelled array, the original ids (sorted, background excluded)
    and the pixel count of each object.
    """
    if flat.size == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=flat.dtype), np.zeros(0, np.int64)
    max_id = int(flat.max())
    if max_id <= max(2 * flat.size, 1 << 20):
        # Small ids: a histogram and a lookup table, both linear in the image size.
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=max_id + 1)
        ids = np.flatnonzero(counts)
        ids = ids[ids > 0]
        lut = np.zeros(max_id + 1, dtype=np.intp)
        lut[ids] = np.arange(1, ids.size + 1)
        return lut[flat], ids.astype(flat.dtype), counts[ids]
    # Large ids: sort-based relabelling (unique + searchsorted is much faster than
    # np.unique(..., return_inverse=True), which needs a stable argsort).
    uniq = np.unique(flat)
    inverse = np.searchsorted(uniq, flat).astype(np.intp, copy=False)
    counts = np.bincount(inverse, minlength=uniq.size)
    if uniq[0] == 0:
        return inverse, uniq[1:], counts[1:]
    return inverse + 1, uniq, counts


def _intersections(
    idx_true: NDArray[np.intp], idx_pred: NDArray[np.intp], n_true: int, n_pred: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int64]]:
    """Sparse joint histogram: (row, col, count) for every overlapping object pair."""
    both = (idx_true > 0) & (idx_pred > 0)
    # Pair code of (true object i, predicted object j), both 0-based.
    codes = (idx_true[both] - 1).astype(np.int64) * n_pred + (idx_pred[both] - 1)
    if n_true * n_pred <= _MAX_DENSE_BINS:
        hist = np.bincount(codes, minlength=n_true * n_pred)
        pair_codes = np.flatnonzero(hist)
        counts = hist[pair_codes]
    else:
        pair_codes, counts = np.unique(codes, return_counts=True)
    rows, cols = np.divmod(pair_codes, n_pred)
    return rows.astype(np.intp), cols.astype(np.intp), counts.astype(np.int64)


def iou_matrix(
    labels_true: ArrayLike, labels_pred: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.integer], NDArray[np.integer]]:
    """Intersection over union between every ground-truth and predicted object.

    The IoUs are computed from a joint histogram of the two label images (one
    pass over the pixels), not with a loop over objects.

    Parameters
    ----------
    labels_true : array_like of int
        Ground-truth label image (2D or 3D), 0 = background.
    labels_pred : array_like of int
        Predicted label image with the same shape as ``labels_true``.

    Returns
    -------
    ious : numpy.ndarray
        Float64 array of shape ``(len(true_ids), len(pred_ids))``;
        ``ious[i, j]`` is the IoU of ground-truth object ``true_ids[i]`` and
        predicted object ``pred_ids[j]`` (0.0 when they do not overlap).
    true_ids : numpy.ndarray
        Ground-truth ids present in ``labels_true``, sorted, without 0.
    pred_ids : numpy.ndarray
        Predicted ids present in ``labels_pred``, sorted, without 0.

    Raises
    ------
    ValueError
        If the shapes differ, if an input is not an integer array or if it
        contains negative labels.
    """
    true, pred = _check_pair(labels_true, labels_pred)
    idx_true, true_ids, area_true = _relabel(true.reshape(-1))
    idx_pred, pred_ids, area_pred = _relabel(pred.reshape(-1))
    n_true, n_pred = true_ids.size, pred_ids.size
    ious = np.zeros((n_true, n_pred), dtype=np.float64)
    if n_true and n_pred:
        rows, cols, inter = _intersections(idx_true, idx_pred, n_true, n_pred)
        union = area_true[rows] + area_pred[cols] - inter
        ious[rows, cols] = inter / union
    return ious, true_ids, pred_ids


# ---------------------------------------------------------------------------
# Matching and scores from a precomputed IoU matrix
# ---------------------------------------------------------------------------


def _match_indices(
    ious: NDArray[np.float64], iou_threshold: float
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Optimal one-to-one matching on an IoU matrix.

    Among pairs with ``IoU >= iou_threshold`` the matching first maximises the
    number of matched pairs and, among those, the total IoU. Returns the row and
    column indices of the matched pairs, sorted by row.
    """
    if ious.size == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    feasible = ious >= iou_threshold
    per_row = feasible.sum(axis=1)
    per_col = feasible.sum(axis=0)
    # A pair whose two objects have no other feasible partner is matched in every
    # optimal matching (always the case for thresholds above 0.5): take these
    # pairs directly and solve the assignment only for the remaining objects.
    r_single = np.flatnonzero(per_row == 1)
    c_single = np.argmax(feasible[r_single], axis=1)
    isolated = per_col[c_single] == 1
    r_iso, c_iso = r_single[isolated], c_single[isolated]
    row_left = per_row > 0
    col_left = per_col > 0
    row_left[r_iso] = False
    col_left[c_iso] = False
    rows = np.flatnonzero(row_left)
    cols = np.flatnonzero(col_left)
    if rows.size == 0:
        order = np.argsort(r_iso, kind="stable")
        return r_iso[order].astype(np.intp), c_iso[order].astype(np.intp)
    sub_ok = feasible[np.ix_(rows, cols)]
    sub_iou = ious[np.ix_(rows, cols)]
    # Each feasible pair is worth 1 plus a tie-breaking IoU bonus; the bonuses of
    # all pairs together stay below 1/2, so they can never outweigh one more match.
    k = min(rows.size, cols.size)
    gain = np.where(sub_ok, 1.0 + sub_iou / (2.0 * k + 1.0), 0.0)
    r, c = linear_sum_assignment(gain, maximize=True)
    keep = sub_ok[r, c]
    r = np.concatenate([r_iso, rows[r[keep]]])
    c = np.concatenate([c_iso, cols[c[keep]]])
    order = np.argsort(r, kind="stable")
    return r[order].astype(np.intp), c[order].astype(np.intp)


def _n_matches(ious: NDArray[np.float64], iou_threshold: float) -> int:
    """Number of true positives at ``iou_threshold`` for an IoU matrix."""
    return int(_match_indices(ious, iou_threshold)[0].size)


def _score(numerator: float, denominator: float, n_true: int, n_pred: int) -> float:
    """``numerator / denominator`` with the module's empty-image conventions."""
    if n_true == 0 and n_pred == 0:
        return 1.0
    if denominator == 0:
        return 0.0
    return float(numerator) / float(denominator)


def _ap_from_counts(tp: int, n_true: int, n_pred: int) -> float:
    """TP / (TP + FP + FN)."""
    return _score(tp, n_true + n_pred - tp, n_true, n_pred)


def _precision_from_counts(tp: int, n_true: int, n_pred: int) -> float:
    """TP / (TP + FP)."""
    return _score(tp, n_pred, n_true, n_pred)


def _recall_from_counts(tp: int, n_true: int, n_pred: int) -> float:
    """TP / (TP + FN)."""
    return _score(tp, n_true, n_true, n_pred)


def _f1_from_counts(tp: int, n_true: int, n_pred: int) -> float:
    """2 TP / (2 TP + FP + FN)."""
    return _score(2 * tp, n_true + n_pred, n_true, n_pred)


def _sbd_from_ious(ious: NDArray[np.float64]) -> float:
    """Symmetric best Dice from an IoU matrix (Dice = 2 IoU / (1 + IoU))."""
    n_true, n_pred = ious.shape
    if n_true == 0 and n_pred == 0:
        return 1.0
    if n_true == 0 or n_pred == 0:
        return 0.0
    dice = 2.0 * ious / (1.0 + ious)
    best_for_true = float(dice.max(axis=1).mean())
    best_for_pred = float(dice.max(axis=0).mean())
    return min(best_for_true, best_for_pred)


def _map_from_ious(ious: NDArray[np.float64], thresholds: Sequence[float]) -> float:
    """Mean over ``thresholds`` of TP / (TP + FP + FN)."""
    n_true, n_pred = ious.shape
    aps = [_ap_from_counts(_n_matches(ious, t), n_true, n_pred) for t in thresholds]
    return float(np.mean(aps))


def _counts(
    labels_true: ArrayLike, labels_pred: ArrayLike, iou_threshold: float
) -> tuple[int, int, int]:
    """(TP, n_true, n_pred) for a pair of label images."""
    t = _check_threshold(iou_threshold)
    ious, _, _ = iou_matrix(labels_true, labels_pred)
    return _n_matches(ious, t), ious.shape[0], ious.shape[1]


# ---------------------------------------------------------------------------
# Public metrics
# ---------------------------------------------------------------------------


def match_instances(
    labels_true: ArrayLike, labels_pred: ArrayLike, *, iou_threshold: float = 0.5
) -> Matching:
    """Match ground-truth and predicted objects one to one.

    Only pairs with ``IoU >= iou_threshold`` can be matched. The matching is
    optimal (Hungarian algorithm): it has the largest possible number of
    matched pairs and, among matchings of that size, the largest total IoU.
    For thresholds of 0.5 and above every object has at most one partner with
    such an IoU, so the matching is unique (up to ties at exactly 0.5); the same
    code path is used for every threshold.

    Parameters
    ----------
    labels_true : array_like of int
        Ground-truth label image (2D or 3D), 0 = background.
    labels_pred : array_like of int
        Predicted label image with the same shape as ``labels_true``.
    iou_threshold : float, optional
        Smallest IoU of a matched pair, in (0, 1]. Default 0.5.

    Returns
    -------
    Matching
        Counts (TP, FP, FN, numbers of objects) and the matched id pairs with
        their IoUs.

    Raises
    ------
    ValueError
        If the shapes differ, an input is not a non-negative integer array, or
        ``iou_threshold`` is outside (0, 1].
    """
    t = _check_threshold(iou_threshold)
    ious, true_ids, pred_ids = iou_matrix(labels_true, labels_pred)
    rows, cols = _match_indices(ious, t)
    n_true, n_pred = ious.shape
    tp = int(rows.size)
    return Matching(
        iou_threshold=t,
        tp=tp,
        fp=n_pred - tp,
        fn=n_true - tp,
        n_true=n_true,
        n_pred=n_pred,
        true_ids=true_ids[rows],
        pred_ids=pred_ids[cols],
        ious=ious[rows, cols],
    )


def average_precision_dsb(
    labels_true: ArrayLike, labels_pred: ArrayLike, *, iou_threshold: float
) -> float:
    """Average precision as defined for the 2018 Data Science Bowl.

    ``AP = TP / (TP + FP + FN)`` at one IoU threshold (StarDist calls this
    "accuracy"). It is not the area under a precision-recall curve.

    Parameters
    ----------
    labels_true : array_like of int
        Ground-truth label image (2D or 3D), 0 = background.
    labels_pred : array_like of int
        Predicted label image with the same shape as ``labels_true``.
    iou_threshold : float
        Smallest IoU of a matched pair, in (0, 1].

    Returns
    -------
    float
        AP in [0, 1]; 1.0 if both images are empty, 0.0 if exactly one is.

    Raises
    ------
    ValueError
        If the inputs or the threshold are invalid (see :func:`match_instances`).
    """
    return _ap_from_counts(*_counts(labels_true, labels_pred, iou_threshold))


def average_precision_annotated(
    labels_true: ArrayLike, labels_pred: ArrayLike, *, iou_threshold: float
) -> float:
    """DSB average precision over the annotated objects of a sparse annotation.

    ``labels_true`` holds only some of the objects (the rest of the image is not annotated),
    so a predicted object that touches no annotated object can be neither right nor wrong
    and is left out. The others count as in :func:`average_precision_dsb`: a predicted
    object that splits an annotated one, or merges it with an unannotated neighbour, costs
    a false positive and (below the IoU threshold) a false negative.

    Examples
    --------
    >>> truth = np.zeros((4, 8), int); truth[:2, :2] = 1
    >>> pred = np.zeros((4, 8), int); pred[:2, :2] = 1; pred[:, 5:] = 2
    >>> average_precision_annotated(truth, pred, iou_threshold=0.5)
    1.0
    """
    true, pred = _check_pair(labels_true, labels_pred)
    touching = np.unique(pred[(true > 0) & (pred > 0)])
    kept = np.where(np.isin(pred, touching), pred, 0)
    return average_precision_dsb(true, kept, iou_threshold=iou_threshold)


def precision(
    labels_true: ArrayLike, labels_pred: ArrayLike, *, iou_threshold: float = 0.5
) -> float:
    """Object-level precision ``TP / (TP + FP)`` at an IoU threshold.

    Parameters
    ----------
    labels_true : array_like of int
        Ground-truth label image (2D or 3D), 0 = background.
    labels_pred : array_like of int
        Predicted label image with the same shape as ``labels_true``.
    iou_threshold : float, optional
        Smallest IoU of a matched pair, in (0, 1]. Default 0.5.

    Returns
    -------
    float
        Precision in [0, 1]; 1.0 if both images are empty, 0.0 if exactly one
        is (including no prediction for a non-empty ground truth).

    Raises
    ------
    ValueError
        If the inputs or the threshold are invalid (see :func:`match_instances`).
    """
    return _precision_from_counts(*_counts(labels_true, labels_pred, iou_threshold))


def recall(labels_true: ArrayLike, labels_pred: ArrayLike, *, iou_threshold: float = 0.5) -> float:
    """Object-level recall ``TP / (TP + FN)`` at an IoU threshold.

    Parameters
    ----------
    labels_true : array_like of int
        Ground-truth label image (2D or 3D), 0 = background.
    labels_pred : array_like of int
        Predicted label image with the same shape as ``labels_true``.
    iou_threshold : float, optional
        Smallest IoU of a matched pair, in (0, 1]. Default 0.5.

    Returns
    -------
    float
        Recall in [0, 1]; 1.0 if both images are empty, 0.0 if exactly one is
        (including predictions on an empty ground truth).

    Raises
    ------
    ValueError
        If the inputs or the threshold are invalid (see :func:`match_instances`).
    """
    return _recall_from_counts(*_counts(labels_true, labels_pred, iou_threshold))


def f1(labels_true: ArrayLike, labels_pred: ArrayLike, *, iou_threshold: float = 0.5) -> float:
    """Object-level F1 score ``2 TP / (2 TP + FP + FN)`` at an IoU threshold.

    Parameters
    ----------
    labels_true : array_like of int
        Ground-truth label image (2D or 3D), 0 = background.
    labels_pred : array_like of int
        Predicted label image with the same shape as ``labels_true``.
    iou_threshold : float, optional
        Smallest IoU of a matched pair, in (0, 1]. Default 0.5.

    Returns
    -------
    float
        F1 in [0, 1]; 1.0 if both images are empty, 0.0 if exactly one is.

    Raises
    ------
    ValueError
        If the inputs or the threshold are invalid (see :func:`match_instances`).
    """
    return _f1_from_counts(*_counts(labels_true, labels_pred, iou_threshold))


def remove_border_objects(labels: ArrayLike, width: int = 2) -> NDArray[np.integer]:
    """``labels`` with every object that has a pixel within ``width`` pixels of the image
    border set to 0 (the other ids are kept)."""
    labels = _as_labels(labels, "labels")
    if width <= 0 or labels.size == 0:
        return labels.copy()
    rim = np.ones(labels.shape, bool)
    rim[tuple(slice(width, max(width, n - width)) for n in labels.shape)] = False
    touching = np.unique(labels[rim])
    return np.where(np.isin(labels, touching[touching > 0]), 0, labels)


def _challenge_counts(true, pred, border: int) -> tuple[int, int, int]:
    true = remove_border_objects(true, border)
    pred = remove_border_objects(pred, border)
    return _counts(true, pred, 0.5)


def f1_challenge(
    labels_true: ArrayLike,
    labels_pred: ArrayLike,
    *,
    border: int = 2,
    tile: int = 2000,
    max_pixels: int = 25_000_000,
) -> float:
    """F1 at IoU 0.5 as scored by the NeurIPS 2022 Cell Segmentation Challenge.

    Objects touching a ``border``-pixel rim of the image are removed from both label images
    before matching (a cell cut by the field of view cannot be judged), objects are matched
    one to one at IoU >= 0.5, and ``F1 = 2 TP / (2 TP + FP + FN)``. Images with more than
    ``max_pixels`` pixels are zero-padded to a multiple of ``tile`` and scored tile by tile
    (border objects removed per tile), with TP, FP and FN summed over the tiles: the
    challenge's rule for whole-slide images.

    Returns 1.0 when neither image has an object left after the border removal, 0.0 when
    exactly one has.

    Examples
    --------
    >>> truth = np.zeros((10, 10), int); truth[0:3, 0:3] = 1; truth[4:7, 4:7] = 2
    >>> pred = np.zeros((10, 10), int); pred[4:7, 4:7] = 5   # misses only a border cell
    >>> f1_challenge(truth, pred)
    1.0
    """
    true, pred = _check_pair(labels_true, labels_pred)
    if true.size <= max_pixels:
        return _f1_from_counts(*_challenge_counts(true, pred, border))
    padded = [-(-n // tile) * tile for n in true.shape[-2:]]
    extra = [p - n for p, n in zip(padded, true.shape[-2:], strict=True)]
    pad = [(0, 0)] * (true.ndim - 2) + [(0, e) for e in extra]
    true, pred = np.pad(true, pad), np.pad(pred, pad)
    tp = n_true = n_pred = 0
    for y in range(0, padded[0], tile):
        for x in range(0, padded[1], tile):
            window = (..., slice(y, y + tile), slice(x, x + tile))
            counts = _challenge_counts(true[window], pred[window], border)
            tp, n_true, n_pred = tp + counts[0], n_true + counts[1], n_pred + counts[2]
    return _f1_from_counts(tp, n_true, n_pred)


def symmetric_best_dice(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Symmetric best Dice (SBD) as used in the CVPPP leaf segmentation challenge.

    ``BD(A, B)`` is the mean over the objects of ``A`` of their best Dice
    coefficient with any object of ``B``; ``SBD = min(BD(true, pred),
    BD(pred, true))``.

    Parameters
    ----------
    labels_true : array_like of int
        Ground-truth label image (2D or 3D), 0 = background.
    labels_pred : array_like of int
        Predicted label image with the same shape as ``labels_true``.

    Returns
    -------
    float
        SBD in [0, 1]; 1.0 if both images are empty, 0.0 if exactly one is.

    Raises
    ------
    ValueError
        If the inputs are invalid (see :func:`iou_matrix`).
    """
    ious, _, _ = iou_matrix(labels_true, labels_pred)
    return _sbd_from_ious(ious)


def mean_average_precision_dsb(
    labels_true: ArrayLike,
    labels_pred: ArrayLike,
    thresholds: Sequence[float] | ArrayLike = DSB_THRESHOLDS,
) -> float:
    """Mean of :func:`average_precision_dsb` over several IoU thresholds.

    Parameters
    ----------
    labels_true : array_like of int
        Ground-truth label image (2D or 3D), 0 = background.
    labels_pred : array_like of int
        Predicted label image with the same shape as ``labels_true``.
    thresholds : sequence of float, optional
        IoU thresholds in (0, 1]. Default :data:`DSB_THRESHOLDS`
        (0.50, 0.55, ..., 0.95).

    Returns
    -------
    float
        Mean AP in [0, 1]; 1.0 if both images are empty, 0.0 if exactly one is.

    Raises
    ------
    ValueError
        If the inputs or a threshold are invalid, or ``thresholds`` is empty.
    """
    ts = _check_thresholds(thresholds)
    ious, _, _ = iou_matrix(labels_true, labels_pred)
    return _map_from_ious(ious, ts)


def evaluate_pair(
    labels_true: ArrayLike,
    labels_pred: ArrayLike,
    *,
    thresholds: Sequence[float] | ArrayLike = (0.5, 0.6, 0.7, 0.8, 0.9),
) -> dict[str, float]:
    """All metrics for one ground-truth / prediction pair.

    The IoU matrix is computed once and reused for every threshold.

    Parameters
    ----------
    labels_true : array_like of int
        Ground-truth label image (2D or 3D), 0 = background.
    labels_pred : array_like of int
        Predicted label image with the same shape as ``labels_true``.
    thresholds : sequence of float, optional
        IoU thresholds in (0, 1] at which AP, precision, recall and F1 are
        reported. Default (0.5, 0.6, 0.7, 0.8, 0.9).

    Returns
    -------
    dict of str to float
        For every threshold ``t`` (formatted with two decimals, e.g. ``0.50``):
        ``"ap@t"``, ``"precision@t"``, ``"recall@t"`` and ``"f1@t"``; then
        ``"map@0.50:0.95"`` (mean AP over :data:`DSB_THRESHOLDS`), ``"sbd"``,
        ``"f1_challenge"`` (:func:`f1_challenge`), ``"n_true"`` and ``"n_pred"`` (object
        counts, as floats).

    Raises
    ------
    ValueError
        If the inputs or a threshold are invalid, ``thresholds`` is empty, or
        two thresholds give the same two-decimal key.
    """
    ts = _check_thresholds(thresholds)
    keys = [f"{t:.2f}" for t in ts]
    if len(set(keys)) != len(keys):
        raise ValueError(f"thresholds must differ at two decimals, got {ts}")
    ious, _, _ = iou_matrix(labels_true, labels_pred)
    n_true, n_pred = ious.shape
    tp_at: dict[float, int] = {}
    for t in (*ts, *DSB_THRESHOLDS):
        if t not in tp_at:
            tp_at[t] = _n_matches(ious, t)
    row: dict[str, float] = {}
    for key, t in zip(keys, ts, strict=True):
        row[f"ap@{key}"] = _ap_from_counts(tp_at[t], n_true, n_pred)
    for key, t in zip(keys, ts, strict=True):
        row[f"precision@{key}"] = _precision_from_counts(tp_at[t], n_true, n_pred)
        row[f"recall@{key}"] = _recall_from_counts(tp_at[t], n_true, n_pred)
        row[f"f1@{key}"] = _f1_from_counts(tp_at[t], n_true, n_pred)
    aps = [_ap_from_counts(tp_at[t], n_true, n_pred) for t in DSB_THRESHOLDS]
    row["map@0.50:0.95"] = float(np.mean(aps))
    row["sbd"] = _sbd_from_ious(ious)
    row["f1_challenge"] = f1_challenge(labels_true, labels_pred)
    row["n_true"] = float(n_true)
    row["n_pred"] = float(n_pred)
    return row


def summarise(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Aggregate :func:`evaluate_pair` rows over a set of images.

    Every score is averaged over images (per-image mean, as in the DSB2018
    evaluation); ``n_true`` and ``n_pred`` are summed. The result also holds
    ``"n_images"``.

    Parameters
    ----------
    rows : sequence of mapping of str to float
        One row per image, all with the same keys.

    Returns
    -------
    dict of str to float
        Same keys as the rows, plus ``"n_images"``.

    Raises
    ------
    ValueError
        If ``rows`` is empty or the rows do not all have the same keys.
    """
    if len(rows) == 0:
        raise ValueError("summarise needs at least one row, got an empty list")
    keys = list(rows[0].keys())
    for i, r in enumerate(rows):
        if set(r.keys()) != set(keys):
            raise ValueError(
                f"all rows must have the same keys; row {i} has {sorted(r.keys())}, "
                f"row 0 has {sorted(keys)}"
            )
    if "n_images" in keys:
        raise ValueError("rows must not contain the key 'n_images' (it is added by summarise)")
    out: dict[str, float] = {}
    for key in keys:
        values = np.array([float(r[key]) for r in rows], dtype=np.float64)
        out[key] = float(values.sum() if key in _SUMMED_KEYS else values.mean())
    out["n_images"] = float(len(rows))
    return out
