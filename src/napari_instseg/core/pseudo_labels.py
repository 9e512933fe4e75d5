"""Pseudo-labels for fine-tuning: the parent's objects that it finds again on a mirrored image.

A fine-tune from a few painted objects learns what those objects teach and forgets, a little,
what the parent knew about the rest of the user's image. The anchor term holds the parent's
*raw outputs* on unannotated pixels; this module holds its *objects* instead, and only those it
is sure of: the image is segmented as it is and mirrored left-right, and an object counts as
sure when the mirrored segmentation has an object that matches it with IoU >= ``min_iou``
(an object that moves with the view is one the parent is guessing at). The sure objects,
away from anything the user annotated or held out, become extra whole objects of the
training sample, each with a thin ring of background where neither view found an object.

On the user's other images (context) the same objects are their only labels, so the
fine-tune also sees more of the user's modality than the painted crops.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from .arrays import LABEL_DTYPE
from .metrics import iou_matrix

#: Background pixels within this many px of a sure object (and in no object of either view)
#: are known background in the pseudo-labelled sample.
RING = 2


def matched_iou(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    """For each object of ``a``, the IoU with the object of ``b`` it overlaps most (0 if none)."""
    ious, ids_a, _ = iou_matrix(a, b)
    best = ious.max(axis=1) if ious.shape[1] else np.zeros(len(ids_a))
    return dict(zip(ids_a.tolist(), best.tolist(), strict=True))


def sure_objects(
    image: np.ndarray,
    segment: Callable[[np.ndarray], np.ndarray],
    *,
    min_iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(sure, found)``: the objects of ``segment(image)`` found again on the mirrored image
    at IoU >= ``min_iou``, and every pixel that either view put in an object.

    ``image`` is ``(C, *spatial)``; the mirror flips the last axis.
    """
    labels = np.asarray(segment(image))
    mirrored = np.flip(np.asarray(segment(np.ascontiguousarray(np.flip(image, -1)))), -1)
    iou = matched_iou(labels, mirrored)
    keep = [i for i, v in iou.items() if v >= min_iou]
    sure = np.where(np.isin(labels, keep), labels, 0).astype(LABEL_DTYPE)
    return sure, (labels > 0) | (mirrored > 0)


def add_pseudo_objects(
    labels: np.ndarray,
    known: np.ndarray,
    sure: np.ndarray,
    found: np.ndarray,
    *,
    exclude: np.ndarray,
    gap: int = 2,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``labels``/``known`` of a training sample with the ``sure`` objects added.

    Sure objects within ``gap`` px of ``exclude`` (what the user annotated or held out) are
    left out; the others get new ids above ``labels``' and a ring of :data:`RING` px of known
    background where neither view found an object. Returns the new labels, known mask and
    the number of objects added.
    """
    near = ndi.binary_dilation(exclude, iterations=gap) if gap > 0 else exclude
    touched = np.unique(sure[near])
    sure = np.where(np.isin(sure, touched[touched > 0]), 0, sure)
    ids = np.unique(sure[sure > 0])
    if ids.size == 0:
        return labels, known, 0
    lookup = np.zeros(int(ids.max()) + 1, dtype=LABEL_DTYPE)
    lookup[ids] = np.arange(1, ids.size + 1, dtype=LABEL_DTYPE) + LABEL_DTYPE(labels.max())
    relabelled = lookup[sure]
    objects = relabelled > 0
    ring = ndi.binary_dilation(objects, iterations=RING) & ~found & ~near
    new_labels = np.where(objects, relabelled, labels).astype(labels.dtype)
    return new_labels, known | objects | ring, int(ids.size)
