"""Tests for napari_instseg.core.arrays: channel-first images and uint32 labels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.arrays import (
    LABEL_DTYPE,
    InputError,
    as_channel_first,
    as_labels,
    relabel_consecutive,
    spatial_ndim,
)

# ---------------------------------------------------------------------------
# as_channel_first
# ---------------------------------------------------------------------------


def test_channel_first_2d_adds_a_channel_axis_and_keeps_values():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    out = as_channel_first(image, ndim=2)
    assert out.shape == (1, 3, 4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], image.astype(np.float32))
    assert spatial_ndim(out) == 2


def test_channel_first_3d():
    image = np.random.default_rng(0).random((2, 5, 6))
    out = as_channel_first(image, ndim=3)
    assert out.shape == (1, 2, 5, 6)
    np.testing.assert_allclose(out[0], image.astype(np.float32))
    assert spatial_ndim(out) == 3


@pytest.mark.parametrize("channel_axis", [0, 1, 2, -1])
def test_channel_axis_is_moved_first(channel_axis):
    cf = np.random.default_rng(1).random((3, 7, 9)).astype(np.float32)  # (C, Y, X)
    image = np.moveaxis(cf, 0, channel_axis)
    out = as_channel_first(image, ndim=2, channel_axis=channel_axis)
    assert out.shape == (3, 7, 9)
    np.testing.assert_array_equal(out, cf)


def test_channel_axis_3d():
    cf = np.random.default_rng(2).random((2, 4, 5, 6)).astype(np.float32)
    image = np.moveaxis(cf, 0, -1)  # (Z, Y, X, C)
    out = as_channel_first(image, ndim=3, channel_axis=-1)
    np.testing.assert_array_equal(out, cf)


def test_bool_image_is_accepted_as_0_1():
    out = as_channel_first(np.eye(3, dtype=bool), ndim=2)
    np.testing.assert_array_equal(out[0], np.eye(3, dtype=np.float32))


@pytest.mark.parametrize(
    ("shape", "ndim", "channel_axis", "match"),
    [
        ((4, 5, 6), 2, None, "choose a channel or time axis"),
        ((4, 5), 3, None, "expected a 3D image"),
        ((4, 5), 2, 0, "plus a channel axis"),
        ((2, 3, 4, 5, 6), 3, 0, "plus a channel axis"),
        ((4, 5), 4, None, "only 2D and 3D"),
        ((4, 5), 1, None, "only 2D and 3D"),
    ],
)
def test_wrong_number_of_axes_is_refused(shape, ndim, channel_axis, match):
    with pytest.raises(InputError, match=match):
        as_channel_first(np.zeros(shape), ndim=ndim, channel_axis=channel_axis)


def test_wrong_ndim_message_names_the_shape():
    with pytest.raises(InputError, match=r"\(4, 5, 6\)"):
        as_channel_first(np.zeros((4, 5, 6)), ndim=2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    image = np.ones((5, 5), np.float32)
    image[2, 3] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        as_channel_first(image, ndim=2)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty_image_is_refused(shape):
    with pytest.raises(InputError, match="empty"):
        as_channel_first(np.zeros(shape), ndim=2)


def test_empty_channel_axis_is_refused():
    with pytest.raises(InputError, match="empty"):
        as_channel_first(np.zeros((0, 5, 5)), ndim=2, channel_axis=0)


@pytest.mark.parametrize(
    "image",
    [
        np.ones((4, 4), np.complex64),
        np.array([["a", "b"], ["c", "d"]]),
        np.empty((2, 2), object),
    ],
    ids=["complex", "str", "object"],
)
def test_non_numeric_dtypes_are_refused(image):
    with pytest.raises(InputError, match="not numeric") as info:
        as_channel_first(image, ndim=2)
    assert str(image.dtype) in str(info.value)


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


# ---------------------------------------------------------------------------
# as_labels
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint8, np.uint16, np.uint64, bool])
def test_as_labels_converts_integers_to_uint32(dtype):
    labels = np.array([[0, 1], [1, 0]], dtype=dtype)
    out = as_labels(labels)
    assert out.dtype == LABEL_DTYPE
    np.testing.assert_array_equal(out, [[0, 1], [1, 0]])


def test_as_labels_accepts_whole_floats():
    out = as_labels(np.array([0.0, 3.0, 7.0]))
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, [0, 3, 7])


def test_as_labels_refuses_negative_values():
    with pytest.raises(InputError, match="non-negative"):
        as_labels(np.array([0, -1, 2]))


@pytest.mark.parametrize("values", [[0.0, 1.5], [0.0, np.nan], [1.0, np.inf]])
def test_as_labels_refuses_non_integer_floats(values):
    with pytest.raises(InputError, match="whole numbers"):
        as_labels(np.array(values))


def test_as_labels_refuses_values_beyond_uint32():
    with pytest.raises(InputError, match="uint32"):
        as_labels(np.array([0, 2**32], dtype=np.int64))


@pytest.mark.parametrize("image", [np.ones(3, np.complex64), np.array(["1", "2"])])
def test_as_labels_refuses_non_integer_dtypes(image):
    with pytest.raises(InputError, match="integers"):
        as_labels(image)


def test_as_labels_of_an_empty_array():
    out = as_labels(np.zeros((0, 3), np.int32))
    assert out.shape == (0, 3) and out.dtype == np.uint32


# ---------------------------------------------------------------------------
# relabel_consecutive
# ---------------------------------------------------------------------------


def test_relabel_consecutive_keeps_background_and_order():
    labels = np.array([[0, 7, 7], [3, 0, 100], [100, 3, 0]])
    out = relabel_consecutive(labels)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, [[0, 2, 2], [1, 0, 3], [3, 1, 0]])


def test_relabel_consecutive_without_background():
    out = relabel_consecutive(np.array([5, 9, 5, 2]))
    np.testing.assert_array_equal(out, [2, 3, 2, 1])


def test_relabel_consecutive_preserves_the_partition_3d():
    rng = np.random.default_rng(3)
    labels = rng.choice([0, 4, 11, 12, 99], size=(4, 5, 6))
    out = relabel_consecutive(labels)
    assert out.shape == labels.shape
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(out == 0, labels == 0)
    # same objects: each old id maps to exactly one new id and vice versa
    pairs = set(zip(labels.ravel().tolist(), out.ravel().tolist(), strict=True))
    assert len(pairs) == 5


def test_relabel_consecutive_all_background_and_empty():
    np.testing.assert_array_equal(relabel_consecutive(np.zeros((2, 2), int)), 0)
    assert relabel_consecutive(np.zeros((0,), int)).shape == (0,)


def test_face_neighbours_pair_each_pixel_with_the_next_along_every_axis():
    from napari_instseg.core.arrays import face_neighbours

    grid = np.indices((3, 4, 5))
    pairs = list(face_neighbours(3))
    assert len(pairs) == 3
    for axis, (lo, hi) in enumerate(pairs):
        step = grid[:, *hi] - grid[:, *lo]
        expected = np.zeros(3, int)
        expected[axis] = 1
        assert (step.reshape(3, -1).T == expected).all()
