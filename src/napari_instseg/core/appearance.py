"""Make a user's image look like what a model learnt from: colour to one channel, dark objects
on a bright background turned into bright objects on a dark one.

Our nuclei models learnt from fluorescence: bright nuclei on black, one channel. Users bring
stained tissue (RGB, nuclei dark purple on pink or white), brightfield (grey, nuclei dark on a
bright background) and RGB files of fluorescence. This module reads any of them into the
channel-first float32 layout of :mod:`~napari_instseg.core.arrays` and maps the intensities
into the model's appearance:

``as-is``
    Nothing but colour to grey (ITU-R BT.601 luma) for a one-channel model.
``invert``
    Grey (luma for colour), then turned upside down: the darkest pixels become the brightest.
``stain``
    Colour deconvolution (Ruifrok & Johnston 2001): the optical density of each pixel,
    ``-log(I / I0)`` with ``I0`` the image's own bright background per channel, projected onto
    the haematoxylin stain vector. Haematoxylin is what stains nuclei in H&E-like images, so the
    nuclei come out bright on a dark background. Needs colour.
``auto``
    The default: the image's look is told from its statistics
    (:func:`~napari_instseg.core.modality.detect_modality` for colour, the background's
    brightness for one channel) and one of the above is chosen for the model's modality.

Only for models that learnt from fluorescence is anything inverted; a model trained on
phase contrast or brightfield gets its images as they are.

Examples
--------
>>> rgb = np.full((32, 32, 3), 230, np.uint8); rgb[8:16, 8:16] = (90, 40, 140)
>>> x, how = to_model_input(rgb, ndim=2, in_channels=1, trained_on="fluorescence")
>>> x.shape, how.mode
((1, 32, 32), 'stain')
>>> bool(x[0, 10, 10] > x[0, 0, 0])  # the stained square is now the bright one
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .arrays import InputError, as_channel_first
from .modality import BRIGHTFIELD, FLUORESCENCE, detect_modality

APPEARANCES = ("auto", "as-is", "invert", "stain")

# ITU-R BT.601 luma weights: how colour becomes one grey channel.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: Haematoxylin's optical density direction in RGB (Ruifrok & Johnston 2001, as normalised in
#: the usual H-E-DAB matrix), and the other two stains of that matrix.
_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
_HED /= np.linalg.norm(_HED, axis=1, keepdims=True)
#: Row 0 of the inverse gives each pixel's haematoxylin amount from its optical densities.
_HED_INV = np.linalg.inv(_HED)

#: One channel: median of the image rescaled to its [1st, 99.8th] percentiles above which
#: the background is bright (objects dark on it). Fluorescence sits far below (DSB: at most
#: 0.27, nearly all below 0.1), brightfield far above.
BRIGHT_BACKGROUND_CUT = 0.45


@dataclass(frozen=True)
class Appearance:
    """How an image was mapped: the mode applied, what was asked and why."""

    mode: str
    asked: str = "auto"
    reason: str = ""
    colour: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"appearance {self.mode}{why}"


def check_appearance(value: str) -> str:
    """``value`` if it names an appearance, else an :class:`InputError` that lists them."""
    if value not in APPEARANCES:
        raise InputError(f"appearance {value!r} is not one of {', '.join(APPEARANCES)}")
    return value


def split_colour(
    image: np.ndarray, *, ndim: int, channel_axis: int | None = None
) -> tuple[np.ndarray | None, int | None]:
    """``(rgb, channel_axis)``: the image as ``(*spatial, 3)`` float32 when it is colour (RGB,
    or RGBA whose alpha is dropped), else ``None`` and the channel axis to use.

    An image is colour when it has one axis more than ``ndim`` and that axis (the channel axis
    given, or the last one) holds 3 or 4 values. A 2-channel image is not colour; it is refused
    here with what to do, because nothing tells which channel holds the objects.
    """
    image = np.asarray(image)
    if image.ndim != ndim + 1:
        return None, channel_axis
    axis = -1 if channel_axis is None else channel_axis
    n = image.shape[axis]
    if channel_axis is None and n not in (3, 4):
        if n == 2:
            raise InputError(
                f"the image has 2 channels (shape {image.shape}): pick the one with the "
                "objects (for example save that channel alone), or give its channel axis"
            )
        return None, channel_axis
    if n not in (3, 4):
        return None, channel_axis
    rgb = np.moveaxis(image, axis, -1)[..., :3]
    if rgb.dtype.kind not in "uif":
        raise InputError(f"colour image dtype {rgb.dtype} is not numeric")
    return rgb.astype(np.float32), None


def bright_background(grey: np.ndarray) -> tuple[bool, float]:
    """Whether a one-channel image has a bright background (objects dark on it), and the
    statistic that decided: the median of the image rescaled to its 1st-99.8th percentiles."""
    values = np.asarray(grey, np.float32)
    values = values[np.isfinite(values)]
    if values.size > 1_000_000:
        values = values[:: values.size // 1_000_000 + 1]
    if values.size == 0:
        return False, 0.0
    lo, mid, hi = np.percentile(values, [1.0, 50.0, 99.8])
    level = float((mid - lo) / max(hi - lo, 1e-12))
    return level > BRIGHT_BACKGROUND_CUT, level


def stain_background(rgb: np.ndarray) -> np.ndarray:
    """``I0`` of a colour image ``(*spatial, 3)``: the light that passes where there is no
    stain, each channel's 99th percentile (a stained slide's background is its brightest
    part, whatever the bit depth or exposure)."""
    flat = np.asarray(rgb, np.float64).reshape(-1, 3)
    sample = flat[:: max(1, flat.shape[0] // 1_000_000)]
    return np.maximum(np.percentile(sample, 99.0, axis=0), 1e-6)


def stain_density(rgb: np.ndarray, background=None) -> np.ndarray:
    """Haematoxylin optical density of a colour image ``(*spatial, 3)`` (nuclei bright).

    ``background`` is ``I0`` per channel; by default the image's own
    (:func:`stain_background`). Blocks of a large image pass the whole image's, so that
    every block maps its intensities the same way.
    """
    rgb = np.asarray(rgb, np.float64)
    i0 = stain_background(rgb) if background is None else np.asarray(background, np.float64)
    ratio = np.clip(rgb, 0, None) / np.maximum(i0, 1e-6)
    od = -np.log(np.clip(ratio, 1e-3, 1.0))
    return (od @ _HED_INV[:, 0]).astype(np.float32)


def _auto(grey_or_none: np.ndarray | None, rgb: np.ndarray | None, trained_on: str):
    """(mode, reason) that ``auto`` picks for an image and a model's modality."""
    if trained_on != FLUORESCENCE:
        return "as-is", f"the model learnt from {trained_on or 'any'} images"
    if rgb is not None:
        looks = detect_modality(rgb)
        if looks.modality == BRIGHTFIELD:
            return "stain", f"stained colour image: {looks.reason}"
        if looks.reason.startswith("gray RGB"):
            grey = rgb @ LUMA
        else:
            return "as-is", f"fluorescence colour image: {looks.reason}"
    else:
        grey = grey_or_none
    bright, level = bright_background(grey)
    if bright:
        return "invert", f"dark objects on a bright background (median at {level:.0%})"
    return "as-is", f"bright objects on a dark background (median at {level:.0%})"


def to_model_input(
    image: np.ndarray,
    *,
    ndim: int,
    in_channels: int,
    channel_axis: int | None = None,
    appearance: str = "auto",
    trained_on: str = FLUORESCENCE,
    background=None,
) -> tuple[np.ndarray, Appearance]:
    """Channel-first float32 input for a model, in the appearance it learnt (not normalised).

    Parameters
    ----------
    image : ndarray
        ``ndim`` spatial axes, plus optionally a channel axis (RGB/RGBA as the last axis is
        recognised without ``channel_axis``), any integer or float dtype (8- and 16-bit
        colour alike).
    ndim, in_channels : int
        The model's spatial dimensions and input channels.
    appearance : {"auto", "as-is", "invert", "stain"}
    trained_on : str
        The model's modality (its card's ``modality``); ``auto`` inverts only for
        fluorescence models.
    background : sequence of 3 floats, optional
        ``stain``'s ``I0`` per colour channel (default: the image's own,
        :func:`stain_background`).

    Returns
    -------
    image_cf : ndarray ``(in_channels, *spatial)`` float32
    how : Appearance
    """
    check_appearance(appearance)
    rgb, channel_axis = split_colour(image, ndim=ndim, channel_axis=channel_axis)
    if rgb is not None and in_channels == 3:
        if appearance not in ("auto", "as-is"):
            raise InputError(f"appearance {appearance!r} needs a one-channel model")
        return as_channel_first(rgb, ndim=ndim, channel_axis=-1), Appearance(
            "as-is", appearance, "the model takes colour", True
        )
    if rgb is None:
        image_cf = as_channel_first(image, ndim=ndim, channel_axis=channel_axis)
        if image_cf.shape[0] != 1 or in_channels != 1:
            if appearance in ("invert", "stain"):
                raise InputError(f"appearance {appearance!r} needs a one-channel image")
            return image_cf, Appearance("as-is", appearance, "", False)
        grey = image_cf[0]
    else:
        if in_channels != 1:
            raise InputError(f"the model takes {in_channels} channels; a colour image gives 1 or 3")
        grey = None
    mode, reason = (
        (appearance, "asked for") if appearance != "auto" else _auto(grey, rgb, trained_on)
    )
    if mode == "stain":
        if rgb is None:
            raise InputError(
                "appearance 'stain' needs a colour (RGB) image; use 'invert' for a grey one"
            )
        out = stain_density(rgb, background)
    else:
        out = grey if grey is not None else rgb @ LUMA
        if mode == "invert":
            out = -out  # normalisation maps it to [0, 1] afterwards
    return as_channel_first(out, ndim=ndim), Appearance(mode, appearance, reason, rgb is not None)
