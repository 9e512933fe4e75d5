"""Pseudo-labels for fine-tuning: the parent's objects it finds again on the mirrored image."""

import numpy as np
from scipy import ndimage as ndi

from napari_instseg.core.pseudo_labels import (
    RING,
    add_pseudo_objects,
    matched_iou,
    sure_objects,
)


def _discs(centres, radius, shape=(40, 60)):
    yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.uint32)
    for i, (y, x) in enumerate(centres, 1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = i
    return labels


def _segment(image):
    """A deterministic 'parent': connected components of the first channel."""
    return ndi.label(image[0] > 0.5)[0].astype(np.uint32)


def test_matched_iou_is_the_best_overlap_per_object():
    a = _discs([(10, 10), (10, 40)], 5)
    b = np.roll(a, 2, axis=1)  # both shifted: IoU below 1
    b[b == 2] = 0  # the second one missing
    iou = matched_iou(a, b)
    assert set(iou) == {1, 2}
    assert 0.5 < iou[1] < 1.0 and iou[2] == 0.0
    assert matched_iou(np.zeros((4, 4), int), a[:4, :4]) == {}


def test_objects_the_mirrored_view_finds_again_are_sure():
    truth = _discs([(10, 10), (25, 40)], 6)
    image = (truth > 0).astype(np.float32)[None]
    sure, found = sure_objects(image, _segment, min_iou=0.9)
    assert len(np.unique(sure[sure > 0])) == 2  # a mirror-symmetric parent is sure of all
    assert np.array_equal(found, truth > 0)

    def biased(img):  # a parent whose objects move with the view: it guesses
        labels = _segment(img)
        return np.roll(labels, 3, axis=1)

    sure, found = sure_objects(image, biased, min_iou=0.9)
    assert not sure.any()
    assert found.sum() > (truth > 0).sum()  # both views' objects count as found


def test_pseudo_objects_keep_away_from_annotations_and_get_a_background_ring():
    sure = _discs([(10, 10), (10, 40), (30, 25)], 5)
    found = sure > 0
    labels = np.zeros_like(sure)
    labels[sure == 2] = 7  # the user annotated the second object (it overlaps)
    known = labels > 0
    new_labels, new_known, n = add_pseudo_objects(labels, known, sure, found, exclude=known)
    assert n == 2
    assert set(np.unique(new_labels)) == {0, 7, 8, 9}  # new ids above the user's
    assert np.array_equal(new_labels == 7, labels == 7)  # the user's object untouched
    first = new_labels[10, 10]
    ring = ndi.binary_dilation(new_labels == first, iterations=RING) & ~found
    assert new_known[ring].all()  # background around a pseudo object is known
    assert not new_known[0, 59]  # far away stays unknown
    # nothing sure: unchanged
    same = add_pseudo_objects(labels, known, np.zeros_like(sure), found, exclude=known)
    assert same[2] == 0 and same[0] is labels
