"""Reading a model input out of viewer-shaped arrays (time, channel, RGB axes)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.arrays import InputError
from napari_instseg.core.axes import AxisChoice, extra_axes, image_for_model, labels_shape


def test_plain_2d_image():
    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    image, where = image_for_model(data, ndim=2, in_channels=1)
    assert image.shape == (1, 3, 4) and image.dtype == np.float32
    np.testing.assert_array_equal(image[0], data)
    assert where == (slice(None), slice(None))


def test_time_axis_takes_the_chosen_plane_and_says_where_it_goes():
    data = np.stack([np.full((5, 6), t, np.float32) for t in range(4)])
    image, where = image_for_model(data, ndim=2, in_channels=1, choice=AxisChoice(indices={0: 2}))
    assert image.shape == (1, 5, 6) and np.all(image == 2)
    labels = np.zeros(labels_shape(data.shape, rgb=False, channel_axis=None), np.uint32)
    labels[where] = 7
    assert labels[2].min() == 7 and labels[[0, 1, 3]].max() == 0


def test_channel_axis_with_a_picked_channel_and_with_all_channels():
    data = np.stack([np.full((2, 5, 6), c, np.float32) for c in range(3)], axis=1)  # T, C, Y, X
    choice = AxisChoice(channel_axis=1, channel=2, indices={0: 1})
    image, where = image_for_model(data, ndim=2, in_channels=1, choice=choice)
    assert image.shape == (1, 5, 6) and np.all(image == 2)
    assert labels_shape(data.shape, rgb=False, channel_axis=1) == (2, 5, 6)
    assert where == (1, slice(None), slice(None))
    image, _ = image_for_model(data, ndim=2, in_channels=3, choice=AxisChoice(channel_axis=1))
    assert image.shape == (3, 5, 6)
    np.testing.assert_array_equal(image[:, 0, 0], [0, 1, 2])


def test_rgb_is_converted_to_grey_or_one_colour_is_kept():
    data = np.zeros((4, 4, 3), np.uint8)
    data[..., 0], data[..., 1], data[..., 2] = 100, 200, 50
    grey, _ = image_for_model(data, ndim=2, in_channels=1, rgb=True)
    assert grey[0, 0, 0] == pytest.approx(0.299 * 100 + 0.587 * 200 + 0.114 * 50, rel=1e-5)
    green, _ = image_for_model(data, ndim=2, in_channels=1, rgb=True, choice=AxisChoice(channel=1))
    assert np.all(green == 200)
    assert labels_shape(data.shape, rgb=True, channel_axis=None) == (4, 4)


def test_keep_rgb_gives_the_colours_unless_a_channel_is_chosen():
    data = np.zeros((2, 4, 5, 4), np.uint8)  # T, Y, X, RGBA
    data[1, ..., 0], data[1, ..., 1], data[1, ..., 2], data[1, ..., 3] = 100, 200, 50, 255
    colour, where = image_for_model(
        data, ndim=2, in_channels=1, rgb=True, choice=AxisChoice(indices={0: 1}), keep_rgb=True
    )
    assert colour.shape == (3, 4, 5) and colour.dtype == np.float32  # alpha dropped
    np.testing.assert_array_equal(colour[:, 0, 0], [100, 200, 50])
    assert where == (1, slice(None), slice(None))
    choice = AxisChoice(channel=1, indices={0: 1})
    green, _ = image_for_model(data, ndim=2, in_channels=1, rgb=True, choice=choice, keep_rgb=True)
    assert green.shape == (1, 4, 5) and np.all(green == 200)


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        (np.zeros((5,), np.float32), {}, "non-colour axes"),
        (np.zeros((3, 5, 6), np.float32), {"choice": AxisChoice(channel_axis=0)}, "pick one"),
        (np.zeros((3, 5, 6), np.float32), {"choice": AxisChoice(channel_axis=2)}, "channel axis"),
        (np.zeros((3, 5, 6), np.float32), {"choice": AxisChoice(indices={0: 3})}, "outside"),
        (np.zeros((5, 6, 3), np.uint8), {"rgb": True, "choice": AxisChoice(channel=4)}, "RGB"),
        (np.full((5, 6), np.nan, np.float32), {}, "NaN"),
    ],
)
def test_what_cannot_be_used_is_refused_clearly(data, kwargs, message):
    with pytest.raises(InputError, match=message):
        image_for_model(data, ndim=2, in_channels=1, **kwargs)


def test_extra_axes_lists_leading_non_channel_axes():
    assert extra_axes((2, 3, 10, 10), ndim=2, rgb=False, channel_axis=1) == [0]
    assert extra_axes((2, 10, 10, 3), ndim=2, rgb=True, channel_axis=None) == [0]
    assert extra_axes((8, 10, 10), ndim=3, rgb=False, channel_axis=None) == []


def test_only_the_needed_plane_is_read_from_lazy_data():
    class CountingArray:
        """Array-like that records which index it was read with."""

        def __init__(self, shape):
            self.shape, self.ndim, self.reads = shape, len(shape), []

        def __getitem__(self, index):
            self.reads.append(index)
            return np.ones(
                [s for s, i in zip(self.shape, index, strict=True) if isinstance(i, slice)],
                np.float32,
            )

    data = CountingArray((100, 8, 8))
    image, _ = image_for_model(data, ndim=2, in_channels=1, choice=AxisChoice(indices={0: 42}))
    assert image.shape == (1, 8, 8)
    assert data.reads == [(42, slice(None), slice(None))]
