"""Segment a stack plane by plane: a time series or z stack with a model of fewer dimensions.

napari shows a ``(T, Y, X)`` or ``(T, C, Y, X)`` array as a stack of planes, and the Segment
widget segments the plane on screen. :func:`segment_planes` segments every plane of such an
array in turn, each exactly as :func:`~napari_instseg.core.pipeline.segment_image` segments
one image (appearance, object size, prediction, assembly), and puts the labels back in the
stack's shape. An image with no stack axes is one plane, so callers need no special case.

Axes, for a model with ``ndim`` spatial dimensions: the channel axis (given, or RGB/RGBA as
the last axis) is set aside; of the other axes the last ``ndim`` are spatial and the ones
before them are stack axes, every index of which is one plane. Labels have the image's shape
without the channel axis; ids run on from plane to plane, so no two objects share an id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arrays import LABEL_DTYPE, InputError
from .jobs import Job, Progress, stop_requested
from .predict import PredictConfig


@dataclass(frozen=True)
class StackLayout:
    """Which axes of an image are stack, spatial and channel axes (see the module doc)."""

    shape: tuple[int, ...]
    stack_axes: tuple[int, ...]
    spatial_axes: tuple[int, ...]
    #: The axis holding channels or colour, or None for a one-channel image.
    channel_axis: int | None
    #: Whether that axis is RGB(A) colour found by its size, not given.
    colour: bool = False

    @property
    def n_planes(self) -> int:
        return int(np.prod([self.shape[a] for a in self.stack_axes], dtype=np.int64))

    @property
    def labels_shape(self) -> tuple[int, ...]:
        return tuple(n for a, n in enumerate(self.shape) if a != self.channel_axis)

    def plane_indices(self):
        """Each plane's index on the stack axes, in C order."""
        return np.ndindex(*(self.shape[a] for a in self.stack_axes))

    def describe(self) -> str:
        """'' for a single plane, else e.g. '12 planes (axis 0)'."""
        if not self.stack_axes:
            return ""
        axes = ", ".join(str(a) for a in self.stack_axes)
        return f"{self.n_planes} planes (axis {axes})"


def stack_layout(shape, *, ndim: int, channel_axis: int | None = None) -> StackLayout:
    """The :class:`StackLayout` of an image of ``shape`` for a model with ``ndim`` spatial axes.

    Raises
    ------
    InputError
        A channel axis outside the image; too few axes; a small last axis that is not colour
        (channels last, which must be said: nothing else tells them from a spatial axis).
    """
    shape = tuple(int(n) for n in shape)
    n = len(shape)
    colour = False
    if channel_axis is not None:
        if not -n <= channel_axis < n:
            raise InputError(f"channel axis {channel_axis} is outside the image's {n} axes")
        channel_axis %= n
    elif n > ndim and shape[-1] in (3, 4):
        channel_axis, colour = n - 1, True
    elif n > ndim and shape[-1] <= 4:
        raise InputError(
            f"the image's last axis has only {shape[-1]} values (shape {shape}): if it holds "
            "channels, give it as the channel axis (-1) and pick the channel with the objects"
        )
    rest = [a for a in range(n) if a != channel_axis]
    if len(rest) < ndim:
        raise InputError(
            f"the model is {ndim}D but the image has {len(rest)} axes besides channels "
            f"(shape {shape})"
        )
    return StackLayout(
        shape=shape,
        stack_axes=tuple(rest[: len(rest) - ndim]),
        spatial_axes=tuple(rest[len(rest) - ndim :]),
        channel_axis=channel_axis,
        colour=colour,
    )


@dataclass
class StackSegmentation:
    """The labels of every plane of a stack, and how each plane was segmented."""

    labels: np.ndarray
    layout: StackLayout
    backend: str
    knobs: dict[str, Any] = field(default_factory=dict)
    #: One record per plane: ``index`` (on the stack axes), ``objects``, ``ids`` (first,
    #: last; ``[0, 0]`` for none), ``info`` (the prediction's: modality, appearance,
    #: diameter), ``report``, ``seconds``.
    planes: list[dict[str, Any]] = field(default_factory=list)
    #: Seconds summed over the planes (``predict``, ``assemble`` ...), and ``total``.
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n_objects(self) -> int:
        return sum(p["objects"] for p in self.planes)


def read_plane(image, layout: StackLayout, index: tuple[int, ...], *, channel: int | None = None):
    """``(plane, channel_axis)``: one plane of ``image`` (numpy, zarr or dask: only that plane
    is read) with its channel axis last, or one ``channel`` of it (then no channel axis)."""
    where: list = [slice(None)] * len(layout.shape)
    for axis, i in zip(layout.stack_axes, index, strict=True):
        where[axis] = i
    plane = np.asarray(image[tuple(where)])
    if layout.channel_axis is None:
        if channel is not None:
            raise InputError(
                f"channel {channel} was asked for, but the image (shape {layout.shape}) has "
                "no channel axis: give the axis that holds the channels"
            )
        return plane, None
    # Integer indices removed the stack axes, all of which come before the spatial ones.
    axis = layout.channel_axis - sum(1 for a in layout.stack_axes if a < layout.channel_axis)
    plane = np.moveaxis(plane, axis, -1)
    if channel is None:
        return plane, plane.ndim - 1
    n_channels = plane.shape[-1] if not layout.colour else 3  # RGBA's alpha is no channel
    if not 0 <= channel < n_channels:
        raise InputError(f"channel {channel} is outside the image's channels 0..{n_channels - 1}")
    return plane[..., channel], None


def segment_planes(
    model,
    image,
    *,
    channel_axis: int | None = None,
    channel: int | None = None,
    config: PredictConfig = PredictConfig(),
    backend: str | None = None,
    knobs: dict | None = None,
    appearance: str = "auto",
    diameter: float | str | None = "auto",
) -> Job[StackSegmentation | None]:
    """Segment every plane of ``image`` with ``model``, one after the other; stoppable.

    Parameters
    ----------
    model : Model
    image : array-like
        Any number of stack axes before the model's spatial axes, with an optional channel
        axis anywhere (``channel_axis``) or RGB(A) colour last.
    channel : int, optional
        Keep only this channel (of ``channel_axis``, or of the colours); default: all, as
        :func:`~napari_instseg.core.pipeline.segment_image` takes them (colour goes to the
        appearance step).
    config, backend, knobs, appearance, diameter
        As for :func:`~napari_instseg.core.pipeline.segment_image`, applied to each plane
        (``diameter="auto"`` estimates it on each plane).

    Yields ``Progress("plane", i, n_planes)`` before each plane, then that plane's own events.
    Returns None when stopped.
    """
    from .pipeline import segment_image

    t0 = time.perf_counter()
    layout = stack_layout(image.shape, ndim=model.card.ndim, channel_axis=channel_axis)
    model.backend_config(backend or model.card.backend, knobs)  # refuse bad knobs first
    labels = np.zeros(layout.labels_shape, LABEL_DTYPE)
    planes: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    used_backend, used_knobs = backend or model.card.backend, dict(knobs or {})
    n_planes = layout.n_planes
    for i, index in enumerate(layout.plane_indices()):
        if stop_requested((yield Progress("plane", i, n_planes))):
            return None
        plane, plane_cax = read_plane(image, layout, index, channel=channel)
        seg = yield from segment_image(
            model,
            plane,
            config=config,
            backend=backend,
            knobs=knobs,
            channel_axis=plane_cax,
            appearance=appearance,
            diameter=diameter,
        )
        if seg is None:
            return None
        offset = sum(p["objects"] for p in planes)
        found = int(seg.labels.max())
        plane_labels = seg.labels.astype(LABEL_DTYPE, copy=False)
        # ids of later planes run on, so that no two objects of the stack share one
        labels[index] = np.where(plane_labels > 0, plane_labels + offset, 0)
        planes.append(
            {
                "index": [int(k) for k in index],
                "objects": found,
                "ids": [offset + 1, offset + found] if found else [0, 0],
                "info": dict(seg.prediction.info),
                "report": seg.report,
                "seconds": seg.seconds,
            }
        )
        used_backend, used_knobs = seg.backend, seg.knobs
        for key, value in seg.seconds.items():
            seconds[key] = seconds.get(key, 0.0) + value
    yield Progress("plane", n_planes, n_planes)
    seconds["total"] = time.perf_counter() - t0
    return StackSegmentation(
        labels=labels,
        layout=layout,
        backend=used_backend,
        knobs=used_knobs,
        planes=planes,
        seconds=seconds,
    )
