"""Which axes of an image are a stack, which spatial, which channels; and one plane read out."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.arrays import InputError
from napari_instseg.core.planes import read_plane, stack_layout


@pytest.mark.parametrize(
    "shape, ndim, channel_axis, stack, channel, colour, labels",
    [
        ((64, 64), 2, None, (), None, False, (64, 64)),
        ((5, 64, 64), 2, None, (0,), None, False, (5, 64, 64)),
        ((64, 64, 3), 2, None, (), 2, True, (64, 64)),
        ((5, 64, 64, 4), 2, None, (0,), 3, True, (5, 64, 64)),
        ((5, 2, 64, 64), 2, 1, (0,), 1, False, (5, 64, 64)),
        ((2, 5, 64, 64), 2, 0, (1,), 0, False, (5, 64, 64)),
        ((5, 64, 64, 2), 2, -1, (0,), 3, False, (5, 64, 64)),
        ((4, 10, 64, 64), 3, None, (0,), None, False, (4, 10, 64, 64)),
        ((10, 64, 64), 3, None, (), None, False, (10, 64, 64)),
    ],
)
def test_layout(shape, ndim, channel_axis, stack, channel, colour, labels):
    layout = stack_layout(shape, ndim=ndim, channel_axis=channel_axis)
    assert layout.stack_axes == stack
    assert layout.channel_axis == channel and layout.colour == colour
    assert layout.labels_shape == labels
    assert layout.n_planes == int(np.prod([shape[a] for a in stack]))
    assert len(list(layout.plane_indices())) == layout.n_planes


@pytest.mark.parametrize(
    "shape, channel_axis, words",
    [
        ((64, 64, 2), None, "last axis has only 2 values"),
        ((64, 64), 0, "besides channels"),
        ((64, 64), 2, "outside the image's 2 axes"),
        ((64,), None, "besides channels"),
    ],
)
def test_layouts_that_cannot_be_read_are_refused(shape, channel_axis, words):
    with pytest.raises(InputError, match=words):
        stack_layout(shape, ndim=2, channel_axis=channel_axis)


def test_a_plane_comes_with_its_channels_last_or_as_one_channel():
    data = np.arange(2 * 5 * 4 * 6).reshape(2, 5, 4, 6)  # (C, T, Y, X)
    layout = stack_layout(data.shape, ndim=2, channel_axis=0)
    plane, axis = read_plane(data, layout, (3,))
    assert axis == 2
    np.testing.assert_array_equal(plane, np.moveaxis(data[:, 3], 0, -1))
    plane, axis = read_plane(data, layout, (3,), channel=1)
    assert axis is None
    np.testing.assert_array_equal(plane, data[1, 3])
    with pytest.raises(InputError, match="channel 2 is outside"):
        read_plane(data, layout, (3,), channel=2)
    grey = stack_layout((5, 4, 6), ndim=2)
    with pytest.raises(InputError, match="no channel axis"):
        read_plane(data[0], grey, (0,), channel=0)
    rgba = stack_layout((4, 6, 4), ndim=2)
    with pytest.raises(InputError, match="channels 0..2"):  # alpha is not a colour
        read_plane(np.zeros((4, 6, 4)), rgba, (), channel=3)
