"""Turn an n-D array as a viewer holds it (time, channel, RGB ...) into a model's input.

A viewer layer may have more axes than a model takes: a time axis, a channel axis, RGB
colour as the last axis. The user says which axis holds channels and which index to take on
every other extra axis; this module does the slicing and says clearly what cannot be used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .appearance import LUMA
from .arrays import InputError, as_channel_first


@dataclass(frozen=True)
class AxisChoice:
    """How to read a model input out of a layer's array.

    Attributes
    ----------
    channel_axis : int or None
        Axis of the layer data that holds channels (not counting RGB's last axis).
    channel : int or None
        Keep only this channel (of ``channel_axis`` or of RGB) for a 1-channel model.
        ``None`` with RGB data means "convert to grey".
    indices : dict of int -> int
        Index to take on each leading axis that is neither spatial nor channel (time ...).
    """

    channel_axis: int | None = None
    channel: int | None = None
    indices: dict[int, int] = field(default_factory=dict)


def extra_axes(shape: tuple[int, ...], *, ndim: int, rgb: bool, channel_axis: int | None):
    """The leading axes that need an index: all but the last ``ndim`` spatial ones (and
    the channel axis and RGB's colour axis)."""
    n = len(shape) - (1 if rgb else 0)
    spatial = set(range(n - ndim, n))
    return [a for a in range(n) if a not in spatial and a != channel_axis]


def image_for_model(
    data,
    *,
    ndim: int,
    in_channels: int,
    rgb: bool = False,
    choice: AxisChoice = AxisChoice(),
    keep_rgb: bool = False,
) -> tuple[np.ndarray, tuple]:
    """Read a channel-first model input from layer data.

    Parameters
    ----------
    data : array-like
        The layer's data (numpy, dask or zarr; only the needed plane is read).
    ndim : int
        Spatial dimensions the model takes (the last ``ndim`` axes of ``data``, before RGB).
    in_channels : int
        Channels the model takes.
    rgb : bool
        Whether the last axis of ``data`` is RGB(A) colour.
    choice : AxisChoice
    keep_rgb : bool
        With RGB data and no channel chosen, keep the three colours, ``(3, *spatial)``, instead
        of converting to grey: for :func:`~napari_instseg.core.pipeline.segment_image`, whose
        appearance step turns colour into the model's one channel (stain unmixing needs the
        colours). The model's channel count is then checked there.

    Returns
    -------
    image : ndarray ``(C, *spatial)`` float32
    where : tuple
        Index into a labels array with the layer's non-channel shape that places this result
        (slices on spatial axes, integers on the fixed extra axes).
    """
    shape = tuple(data.shape)
    n = len(shape) - (1 if rgb else 0)
    if n < ndim:
        raise InputError(
            f"the model is {ndim}D but the layer has only {n} non-colour axes (shape {shape})"
        )
    cax = choice.channel_axis
    if cax is not None and not (0 <= cax < n - ndim):
        raise InputError(f"channel axis {cax} must be one of the leading axes 0..{n - ndim - 1}")
    extras = extra_axes(shape, ndim=ndim, rgb=rgb, channel_axis=cax)
    index: list = []
    where: list = []
    for ax in range(n):
        if ax in extras:
            i = int(choice.indices.get(ax, 0))
            if not 0 <= i < shape[ax]:
                raise InputError(f"index {i} is outside axis {ax} of size {shape[ax]}")
            index.append(i)
            where.append(i)
        else:
            index.append(slice(None))
            if ax != cax:
                where.append(slice(None))
    plane = np.asarray(data[tuple(index)])
    if rgb:
        if cax is not None:
            raise InputError("an RGB layer cannot also have a channel axis")
        colour = plane[..., :3].astype(np.float32)
        if choice.channel is None and keep_rgb:
            return as_channel_first(colour, ndim=ndim, channel_axis=-1), tuple(where)
        if choice.channel is not None:
            if not 0 <= choice.channel < 3:
                raise InputError(f"RGB has channels 0..2, not {choice.channel}")
            grey = colour[..., choice.channel]
        else:
            grey = colour @ LUMA
        plane, cax_plane = grey, None
    else:
        cax_plane = None if cax is None else sum(1 for a in range(cax) if a not in extras)
    if cax_plane is not None and choice.channel is not None:
        if not 0 <= choice.channel < plane.shape[cax_plane]:
            raise InputError(f"channel {choice.channel} is outside the channel axis")
        plane = np.take(plane, choice.channel, axis=cax_plane)
        cax_plane = None
    image = as_channel_first(plane, ndim=ndim, channel_axis=cax_plane)
    if image.shape[0] != in_channels:
        hint = "pick one channel" if image.shape[0] > in_channels else "choose the channel axis"
        raise InputError(
            f"the model takes {in_channels} channel(s), this choice gives {image.shape[0]}: {hint}"
        )
    return image, tuple(where)


def labels_shape(shape: tuple[int, ...], *, rgb: bool, channel_axis: int | None) -> tuple:
    """Shape of a labels layer that lines up with an image layer's data."""
    n = len(shape) - (1 if rgb else 0)
    return tuple(s for a, s in enumerate(shape[:n]) if a != channel_axis)
