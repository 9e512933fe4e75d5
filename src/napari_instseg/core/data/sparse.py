"""Sparse object-level annotation: keep some instances, mark what is known."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..arrays import LABEL_DTYPE, InputError, as_labels

#: The id a user paints to mark pixels known to be background in a sparse annotation.
#: 0 stays "not annotated"; every other id is one annotated object.
BACKGROUND_LABEL = 65535


def annotation_to_labels(annotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a painted sparse annotation into instance labels and the known-pixel mask.

    Parameters
    ----------
    annotation : ndarray of int
        0 = not annotated, :data:`BACKGROUND_LABEL` = painted background, any other id = one
        whole annotated object.

    Returns
    -------
    labels : ndarray of uint32
        The annotated objects, 0 elsewhere (including painted background).
    known : ndarray of bool
        Annotated objects plus painted background.

    Examples
    --------
    >>> a = np.array([[0, 3, 3], [BACKGROUND_LABEL, 0, 5]])
    >>> labels, known = annotation_to_labels(a)
    >>> labels.tolist(), known.tolist()
    ([[0, 3, 3], [0, 0, 5]], [[False, True, True], [True, False, True]])
    """
    annotation = as_labels(annotation)
    known = annotation > 0
    labels = np.where(annotation == BACKGROUND_LABEL, 0, annotation).astype(LABEL_DTYPE)
    if not (labels > 0).any():
        raise InputError("the annotation has no objects: paint at least one object")
    return labels, known


#: Fewer annotated objects than this (over all images) make a fine-tune a guess, not a fit.
MIN_ANNOTATED_OBJECTS = 3
#: Objects of fewer pixels than this are more likely a stray brush stroke than an object.
MIN_OBJECT_PIXELS = 9


def annotation_warnings(
    annotations: list[np.ndarray], *, names: list[str] | None = None
) -> list[str]:
    """What is too little in a set of sparse annotations to learn from, as warnings.

    Too few objects (:data:`MIN_ANNOTATED_OBJECTS` over all images) and objects smaller than
    :data:`MIN_OBJECT_PIXELS` pixels (likely stray strokes) are worth a word before a model is
    trained and published from them; they are not refused, since a user may mean them.

    Examples
    --------
    >>> a = np.zeros((20, 20), np.uint32)
    >>> a[2:4, 2:4] = 1
    >>> annotation_warnings([a])  # doctest: +NORMALIZE_WHITESPACE
    ['only 1 annotated object: a model fine-tuned from fewer than 3 objects mostly learns
    their peculiarities; annotate a few more', '1 annotated object is smaller than 9 pixels
    (in image 1: 4 px): a stray brush stroke? erase it, or paint the whole object']
    """
    names = names or [f"image {i + 1}" for i in range(len(annotations))]
    total, tiny = 0, []
    for name, annotation in zip(names, annotations, strict=True):
        labels = np.asarray(annotation)
        ids, sizes = np.unique(
            labels[(labels > 0) & (labels != BACKGROUND_LABEL)], return_counts=True
        )
        total += ids.size
        tiny += [(name, int(n)) for n in sizes if n < MIN_OBJECT_PIXELS]
    out = []
    if total < MIN_ANNOTATED_OBJECTS:
        out.append(
            f"only {total} annotated object{'s' * (total != 1)}: a model fine-tuned from fewer "
            f"than {MIN_ANNOTATED_OBJECTS} objects mostly learns their peculiarities; annotate "
            "a few more"
        )
    if tiny:
        shown = ", ".join(f"{n} px" for _, n in tiny[:5]) + (", ..." if len(tiny) > 5 else "")
        where = tiny[0][0] if len({t[0] for t in tiny}) == 1 else "several images"
        out.append(
            f"{len(tiny)} annotated object{' is' if len(tiny) == 1 else 's are'} smaller than "
            f"{MIN_OBJECT_PIXELS} pixels (in {where}: {shown}): a stray brush stroke? erase "
            "it, or paint the whole object"
        )
    return out


def split_objects(
    labels: np.ndarray, fraction: float, *, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a random ``fraction`` of the annotated objects for validation.

    Returns ``(kept_ids, held_out_ids)``; at least one object is always kept for training,
    and none is held out when there is only one.
    """
    if not 0 <= fraction < 1:
        raise InputError(f"held-out fraction must be in [0, 1), got {fraction}")
    ids = np.unique(labels)
    ids = ids[ids != 0]
    n_held = min(int(round(fraction * ids.size)), max(0, ids.size - 1))
    held = np.sort(rng.choice(ids, size=n_held, replace=False)) if n_held else ids[:0]
    return np.setdiff1d(ids, held), held


def sparsify_instances(
    labels: np.ndarray,
    fraction: float,
    *,
    rng: np.random.Generator,
    background: str = "none",
    background_radius: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep a random ``fraction`` of the instances and return the pixels whose label is known.

    This simulates a user who annotated a few whole objects: the kept objects are known, the
    other objects and (by default) all background are unknown and must be ignored by losses.

    Parameters
    ----------
    labels : ndarray
        Dense instance labels, 0 = background.
    fraction : float
        Fraction of instances to keep, in (0, 1]; at least one is kept when any exists.
    rng : numpy.random.Generator
        Source of randomness.
    background : {'none', 'all', 'near'}
        Which background pixels count as known: none, all of them (a user who painted all
        background), or those within ``background_radius`` of a kept object (painted strokes
        around the annotated objects).

    Returns
    -------
    sparse_labels : ndarray of uint32
        Kept instances with their ids, 0 elsewhere.
    known : ndarray of bool
        Pixels whose label is known: kept objects plus the chosen background.
    """
    if not 0 < fraction <= 1:
        raise InputError(f"fraction must be in (0, 1], got {fraction}")
    if background not in ("none", "all", "near"):
        raise InputError(f"background must be 'none', 'all' or 'near', not {background!r}")
    ids = np.unique(labels)
    ids = ids[ids != 0]
    n_keep = max(1, int(round(fraction * ids.size))) if ids.size else 0
    kept = rng.choice(ids, size=n_keep, replace=False) if n_keep else ids
    keep_mask = np.isin(labels, kept)
    sparse = np.where(keep_mask, labels, 0).astype(LABEL_DTYPE)
    known = keep_mask.copy()
    if background == "all":
        known |= labels == 0
    elif background == "near" and keep_mask.any():
        near = ndi.binary_dilation(keep_mask, iterations=background_radius)
        known |= near & (labels == 0)
    return sparse, known


def next_object_id(annotation: np.ndarray) -> int:
    """The id for a new object: one above the largest object id, skipping the background id."""
    annotation = np.asarray(annotation)
    ids = annotation[(annotation > 0) & (annotation != BACKGROUND_LABEL)]
    new = int(ids.max()) + 1 if ids.size else 1
    return new + 1 if new == BACKGROUND_LABEL else new


def annotation_counts(annotation: np.ndarray) -> dict[str, int]:
    """Annotated objects, their pixels and the painted background pixels."""
    annotation = np.asarray(annotation)
    background = annotation == BACKGROUND_LABEL
    objects = (annotation > 0) & ~background
    return {
        "objects": int(np.unique(annotation[objects]).size),
        "object_pixels": int(objects.sum()),
        "background_pixels": int(background.sum()),
    }


def copy_objects(
    annotation: np.ndarray, prediction: np.ndarray, ids
) -> tuple[np.ndarray, list[int]]:
    """Copy predicted objects ``ids`` into ``annotation`` as new annotated objects.

    Each copied object gets a fresh id; pixels the user already annotated (objects or
    background) are never overwritten. Returns the new annotation and the new ids.

    Examples
    --------
    >>> ann = np.array([[0, 0, 0, 2]], np.uint32)
    >>> pred = np.array([[5, 5, 7, 7]], np.uint32)
    >>> new, added = copy_objects(ann, pred, [5, 7])
    >>> new.tolist(), added
    ([[3, 3, 4, 2]], [3, 4])
    """
    annotation = as_labels(annotation)
    prediction = as_labels(prediction)
    if annotation.shape != prediction.shape:
        raise InputError(
            f"prediction shape {prediction.shape} differs from the annotation's {annotation.shape}"
        )
    out = annotation.copy()
    free = annotation == 0
    added = []
    for obj in dict.fromkeys(int(i) for i in ids):
        if obj == 0:
            continue
        where = free & (prediction == obj)
        if not where.any():
            continue
        new = next_object_id(out)
        out[where] = new
        free &= ~where
        added.append(new)
    return out, added
