"""Distance, flows and boundaries of label images (the ``flows`` method's targets).

The fast-sweeping solver is checked against the plain Jacobi iteration of the same upwind
update, written here in numpy to be obviously correct.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_instseg.core.flow_fields import labels_to_fields


def ball(shape, centre, radius):
    grid = np.indices(shape, dtype=float)
    r2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return r2 <= radius**2


def reference_distance(labels, iterations=400):
    """Jacobi iteration of the Godunov upwind update until nothing changes (slow, plain)."""
    inside = labels > 0
    dist = np.where(inside, np.inf, 0.0)
    padded_labels = np.pad(labels.astype(np.int64), 1, constant_values=-1)  # -1: off image
    for _ in range(iterations):
        padded = np.pad(dist, 1, constant_values=np.inf)
        minima = []
        for axis in range(labels.ndim):
            values = []
            for shift in (-1, 1):
                sl = [slice(1, -1)] * labels.ndim
                sl[axis] = slice(1 + shift, padded.shape[axis] - 1 + shift)
                lab = padded_labels[tuple(sl)]
                v = np.where(lab == labels, padded[tuple(sl)], 0.0)
                values.append(np.where(lab == -1, np.inf, v))  # no neighbour off the image
            minima.append(np.minimum(*values))
        a = np.sort(np.stack(minima), axis=0)
        new = a[0] + 1.0
        for k in range(2, labels.ndim + 1):
            s = a[:k].sum(0)
            q = (a[:k] ** 2).sum(0)
            with np.errstate(invalid="ignore"):
                root = (s + np.sqrt(np.maximum(s * s - k * (q - 1.0), 0.0))) / k
            new = np.where(new > a[k - 1], root, new)
        new = np.where(inside & np.isfinite(a[0]), np.minimum(dist, new), dist)
        if np.array_equal(new, dist):
            break
        dist = new
    return dist


def test_disk_distance_peaks_at_the_centre_and_flows_point_inward():
    labels = ball((41, 41), (20, 20), 12).astype(np.uint32)
    fields = labels_to_fields(labels)
    inside = labels > 0
    assert np.unravel_index(np.argmax(fields.distance), labels.shape) == (20, 20)
    # close to the Euclidean distance to the nearest background pixel
    edt = ndi.distance_transform_edt(inside)
    assert np.abs(fields.distance - edt)[inside].max() < 1.0
    norm = np.sqrt((fields.flow**2).sum(0))
    assert not fields.flow[:, ~inside].any() and not fields.distance[~inside].any()
    # unit length inside, except on the ridge (here the centre pixel) where it vanishes
    assert np.allclose(norm[inside & (norm > 0)], 1.0, atol=1e-5)
    assert np.count_nonzero(inside & (norm == 0)) == 1 and norm[20, 20] == 0
    towards = np.indices(labels.shape) - np.array([20, 20])[:, None, None]
    cos = -(fields.flow * towards).sum(0) / np.maximum(np.sqrt((towards**2).sum(0)), 1e-9)
    assert cos[inside & (norm > 0)].min() > 0.95


def test_fast_sweeping_matches_the_plain_iteration():
    rng = np.random.default_rng(3)
    seeds = np.zeros((40, 48), np.uint32)
    for i, (y, x) in enumerate(rng.integers(0, 40, (9, 2))):
        seeds[y, x] = i + 1
    from skimage.segmentation import expand_labels

    labels = expand_labels(seeds, 9)  # touching objects, some cut by the edge
    labels[ball(labels.shape, (20, 20), 4)] = 0  # and a hole
    np.testing.assert_allclose(
        labels_to_fields(labels).distance, reference_distance(labels), atol=1e-4
    )


def test_fast_sweeping_matches_the_plain_iteration_in_3d():
    labels = np.zeros((12, 16, 16), np.uint32)
    labels[ball(labels.shape, (6, 7, 7), 5)] = 1
    labels[ball(labels.shape, (5, 8, 13), 4) & (labels == 0)] = 2
    labels[2:10, 12:16, 0:5] = 3
    np.testing.assert_allclose(
        labels_to_fields(labels).distance, reference_distance(labels), atol=1e-4
    )


def test_winding_object_converges():
    labels = np.zeros((31, 31), np.uint32)
    labels[1:30:4, 1:30] = 1  # a serpentine of 3-pixel-wide corridors
    labels[1:30, 1:3] = 1
    labels[1:30, 28:30] = 1
    labels[3:30:8, 1:28] = 0
    labels[7:30:8, 3:30] = 0
    np.testing.assert_allclose(
        labels_to_fields(labels).distance, reference_distance(labels), atol=1e-4
    )


def test_touching_objects_get_a_boundary_and_flow_away_from_each_other():
    labels = np.zeros((20, 30), np.uint32)
    labels[4:16, 3:15] = 1
    labels[4:16, 15:27] = 2
    fields = labels_to_fields(labels)
    expected = (labels > 0) & ~ndi.binary_erosion(labels == 1) & ~ndi.binary_erosion(labels == 2)
    np.testing.assert_array_equal(fields.boundary, expected)
    # at the shared edge each side flows into its own object
    assert (fields.flow[1, 6:14, 14] < -0.9).all()
    assert (fields.flow[1, 6:14, 15] > 0.9).all()
    np.testing.assert_allclose(fields.distance[4:16, 3:15], fields.distance[4:16, 15:27])


def test_objects_continue_past_the_image_edge():
    labels = np.zeros((10, 20), np.uint32)
    labels[:, 5:15] = 1  # a band cut by the top and bottom edges
    fields = labels_to_fields(labels)
    assert not fields.boundary[0, 6:14].any() and not fields.boundary[-1, 6:14].any()
    assert np.allclose(fields.flow[0][labels > 0], 0.0)  # no pull away from the edges
    np.testing.assert_allclose(fields.distance[0], fields.distance[5])


def test_rotations_and_flips_turn_the_flows():
    rng = np.random.default_rng(0)
    from skimage.segmentation import expand_labels

    seeds = np.zeros((33, 27), np.uint32)
    for i, (y, x) in enumerate(zip(rng.integers(0, 33, 7), rng.integers(0, 27, 7), strict=True)):
        seeds[y, x] = i + 1
    labels = expand_labels(seeds, 7)
    f = labels_to_fields(labels)
    rot = labels_to_fields(np.rot90(labels))
    # rot90 maps (y, x) -> (W - 1 - x, y): a vector (dy, dx) becomes (-dx, dy)
    np.testing.assert_allclose(rot.distance, np.rot90(f.distance), atol=1e-5)
    np.testing.assert_allclose(rot.flow[0], -np.rot90(f.flow[1]), atol=1e-5)
    np.testing.assert_allclose(rot.flow[1], np.rot90(f.flow[0]), atol=1e-5)
    flip = labels_to_fields(labels[::-1])
    np.testing.assert_allclose(flip.flow[0], -f.flow[0][::-1], atol=1e-5)
    np.testing.assert_allclose(flip.flow[1], f.flow[1][::-1], atol=1e-5)


def test_ball_in_3d():
    labels = ball((21, 25, 25), (10, 12, 12), 8).astype(np.uint32)
    fields = labels_to_fields(labels)
    inside = labels > 0
    assert fields.flow.shape == (3, *labels.shape)
    assert np.unravel_index(np.argmax(fields.distance), labels.shape) == (10, 12, 12)
    norm = np.sqrt((fields.flow**2).sum(0))
    assert np.allclose(norm[inside & (norm > 0)], 1.0, atol=1e-5)
    assert np.count_nonzero(inside & (norm == 0)) == 1
    towards = np.indices(labels.shape) - np.array([10, 12, 12])[:, None, None, None]
    cos = -(fields.flow * towards).sum(0) / np.maximum(np.sqrt((towards**2).sum(0)), 1e-9)
    assert cos[inside & (norm > 0)].min() > 0.9
    np.testing.assert_array_equal(fields.boundary, inside & ~ndi.binary_erosion(inside))


def test_thin_objects_and_an_image_filled_by_one_object():
    labels = np.zeros((9, 9), np.uint32)
    labels[4, 1:8] = 1  # one pixel thick: no gradient across, only along
    fields = labels_to_fields(labels)
    assert not fields.flow[0].any()
    assert fields.boundary[4, 1:8].all()
    full = labels_to_fields(np.full((6, 6), 3, np.uint32))
    assert full.unresolved.all() and not full.flow.any() and not full.distance.any()
    empty = labels_to_fields(np.zeros((5, 4), np.uint32))
    assert not empty.distance.any() and not empty.boundary.any() and not empty.unresolved.any()


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (1, 1, 1), (3, 1, 4)])
def test_degenerate_shapes(shape):
    labels = np.ones(shape, np.uint32)
    labels.flat[0] = 0
    fields = labels_to_fields(labels)
    assert fields.flow.shape == (len(shape), *shape)
    assert np.isfinite(fields.distance).all()
