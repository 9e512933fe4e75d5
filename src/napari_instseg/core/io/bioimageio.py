"""BioImage Model Zoo (bioimage.io) model packages: export our models, import them back.

A bioimage.io model package is a zip with an ``rdf.yaml`` (model description, spec format
0.5) and the files it names. What napari-instseg writes:

* ``weights.pytorch_state_dict``: ``weights.pt``, the network's state dict saved with
  ``torch.save`` (what bioimage.io's Python tools load, with ``weights_only=True``), and its
  architecture, ``napari_instseg_network.py`` (:mod:`~napari_instseg.core.bioimageio_network`,
  copied verbatim), whose ``InstSegNetwork(**kwargs)`` builds the network with the
  napari-instseg package and returns its heads as a tuple; ``environment.yaml`` names the
  packages it needs;
* ``weights.torchscript``: the same network traced to TorchScript (runs without
  napari-instseg, e.g. in deepImageJ or QuPath), added only when the trace gives the
  network's own outputs on the test input and on a second input size;
* one input tensor ``image`` (batch, channel, [z,] y, x) with the card's percentile
  normalisation as ``scale_range`` preprocessing, and one output tensor per network head, with
  the test input (a crop of a bundled sample image) and the outputs our network gives for it
  (``.npy`` test tensors, and the same arrays as float32 TIFF sample tensors for viewers);
* ``cover.png``: the test input next to the labels napari-instseg assembles from those
  outputs; ``README.md``: what the outputs are, how to get labels from them, training data and
  metrics;
* our own model files as attachments, ``NAME.json`` (the model card) and
  ``NAME.safetensors`` (the weights as we ship them), and under ``config.napari_instseg`` the
  method, back-end and knobs (the card's post-processing, tuned or not).

The network's outputs are not labels: instances come from napari-instseg's back-end with the
card's knobs, which the spec cannot express. Importing therefore restores our model from the
attachments (card + safetensors, each checked against its sha256), so that it gives exactly
the labels of the exported model. Importing never reads ``weights.pt``: it is a pickle
(``torch.save``) and napari-instseg never unpickles; it exists for other bioimage.io tools.
A package that napari-instseg did not write has no card to restore post-processing from, so
it is refused with a message saying what is supported.

Examples
--------
>>> export_bioimageio("threeclass-nuclei", "threeclass-nuclei.bioimageio.zip")  # doctest: +SKIP
>>> card_path = import_bioimageio("threeclass-nuclei.bioimageio.zip")             # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..arrays import InputError

_log = logging.getLogger(__name__)

#: The bioimage.io model spec version the packages follow.
FORMAT_VERSION = "0.5.3"
#: Key under ``config`` that marks a package as ours and holds what our tool needs.
CONFIG_KEY = "napari_instseg"
#: Id of the input tensor.
INPUT_ID = "image"
#: Output border the consumer should crop when it tiles an image (pixels per side).
HALO = 16
#: Side of the test input crop (2D); 3D crops are smaller.
TEST_SIZE_2D, TEST_SIZE_3D = 256, 48
ARCHITECTURE_FILE = "napari_instseg_network.py"
ARCHITECTURE_CALLABLE = "InstSegNetwork"

_SPATIAL = ("z", "y", "x")
_UNET = {
    "text": "Ronneberger, Fischer, Brox: U-Net: Convolutional Networks for Biomedical Image "
    "Segmentation, MICCAI 2015",
    "doi": "10.1007/978-3-319-24574-4_28",
}
#: The paper of each method (the network is always a U-Net, cited as well). By DOI only (arXiv
#: papers by arXiv's DOI): the spec's validator fetches every cited URL, and packages must
#: validate offline.
_METHOD_CITATIONS: dict[str, dict[str, str]] = {
    "threeclass": {
        "text": "Caicedo et al.: Evaluation of Deep Learning Strategies for Nucleus "
        "Segmentation in Fluorescence Images, Cytometry A 2019",
        "doi": "10.1002/cyto.a.23863",
    },
    "embedseg": {
        "text": "Lalit, Tomancak, Jug: EmbedSeg: Embedding-based Instance Segmentation for "
        "Biomedical Microscopy Data, Medical Image Analysis 2022",
        "doi": "10.48550/arXiv.2101.10033",
    },
    "spoco": {
        "text": "Wolny, Yu, Pape, Kreshuk: Sparse Object-level Supervision for Instance "
        "Segmentation with Pixel Embeddings, CVPR 2022",
        "doi": "10.48550/arXiv.2103.14572",
    },
    "patchperpix": {
        "text": "Mais, Hirsch, Kainmueller: PatchPerPix for Instance Segmentation, ECCV 2020",
        "doi": "10.48550/arXiv.2001.07626",
    },
    "flows": {
        "text": "Cutler et al.: Omnipose: a high-precision morphology-independent solution "
        "for bacterial cell segmentation, Nature Methods 2022",
        "doi": "10.1038/s41592-022-01639-4",
    },
    "allcell": {
        "text": "All-Cell Segmenter (anchor-based watershed, github.com/lostkevin/Cell-Segmenter), "
        "an entry of the NeurIPS 2022 Cell Segmentation Challenge: Ma et al.: The "
        "multimodality cell segmentation challenge: toward universal solutions, Nature "
        "Methods 2024",
        "doi": "10.1038/s41592-024-02233-6",
    },
}
_DEFAULT_AUTHORS = ({"name": "napari-instseg contributors"},)


# -- helpers -----------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _safe_stem(name: str) -> str:
    """A file stem from a model name (letters, digits, ``-``, ``_``, ``.``)."""
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._")
    return stem or "model"


def _identifier(text: str) -> str:
    """A lower-case identifier (tensor ids and channel names must be identifiers)."""
    out = "".join(ch if ch.isalnum() else "_" for ch in text.lower())
    return out if out and not out[0].isdigit() else f"t_{out}"


def _load_source(model) -> tuple[Any, Any, bytes | None]:
    """``(card, net, weights bytes or None)`` of a model given by name/path, ``(card, net)``
    or a loaded :class:`~napari_instseg.core.pipeline.Model`. The weights are the shipped
    file's bytes when the model comes from files."""
    if isinstance(model, str | Path):
        from ..checkpoint import load_model, resolve_model_files
        from ..zoo import find_model_path

        card_path, weights_path = resolve_model_files(find_model_path(model))
        card, net = load_model(card_path)
        return card, net, weights_path.read_bytes()
    if isinstance(model, tuple):
        card, net = model
        return card, net, None
    return model.card, model.net, None


def _weights_and_card(card, net, weights: bytes | None) -> tuple[Any, bytes]:
    """The safetensors bytes to ship and the card whose checksum matches them."""
    from ..checkpoint import save_model

    if weights is not None and card.weights_sha256 == _sha256(weights):
        return card, weights
    with tempfile.TemporaryDirectory() as tmp:
        card_path = save_model(
            tmp,
            "model",
            net,
            replace(card, weights_sha256=""),
            half=card.weights_dtype == "float16",
        )
        saved = json.loads(card_path.read_text())
        data = (Path(tmp) / "model.safetensors").read_bytes()
    return replace(card, weights_sha256=saved["weights_sha256"], versions=saved["versions"]), data


def _preprocessing(card) -> list[dict]:
    norm = card.normalisation or {}
    kind = norm.get("kind", "percentile")
    steps: list[dict] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if kind == "none":
        return steps
    if kind != "percentile":
        raise InputError(
            f"model {card.name!r}: its normalisation {kind!r} has no bioimage.io "
            "preprocessing (percentile and none can be exported)"
        )
    axes = list(_SPATIAL[-card.ndim :])
    steps.append(
        {
            "id": "scale_range",
            "kwargs": {
                "axes": axes,
                "min_percentile": float(norm.get("low", 1.0)),
                "max_percentile": float(norm.get("high", 99.8)),
                "eps": 1e-6,
            },
        }
    )
    return steps


def _default_images(card) -> list[np.ndarray]:
    """Bundled samples to take the test input from, the best fit for the model first."""
    from ..modality import FLUORESCENCE
    from ..samples import load_sample

    if card.in_channels != 1:
        raise InputError(
            f"model {card.name!r} takes {card.in_channels} channels and no bundled sample "
            "has them; pass an image for the test tensors"
        )
    if card.ndim == 3:
        names = ["nuclei3d_synthetic_stardist"]
    elif card.modality in ("", "auto", FLUORESCENCE):
        names = ["nuclei2d_dsb_stardist", "phase2d_usiigaci_set1_crop512"]
    else:
        names = ["phase2d_usiigaci_set1_crop512", "nuclei2d_dsb_stardist"]
    return [load_sample(name)[0] for name in names]


def _test_crops(image_cf: np.ndarray, multiple: int) -> list[tuple[slice, ...]]:
    """Test input windows of the image: the centre first, then the corners and the edge
    midpoints (where the image is larger than the window)."""
    import itertools

    side = TEST_SIZE_2D if image_cf.ndim == 3 else TEST_SIZE_3D
    starts = []
    for n in image_cf.shape[1:]:
        size = min(n, max(side, multiple)) // multiple * multiple
        if size < multiple:
            raise InputError(
                f"the test image ({image_cf.shape[1:]}) is smaller than the network's size "
                f"step {multiple} on some axis"
            )
        starts.append((size, list(dict.fromkeys([(n - size) // 2, 0, n - size]))))
    return [
        (slice(None), *(slice(s, s + size) for s, (size, _) in zip(combo, starts, strict=True)))
        for combo in itertools.product(*(options for _, options in starts))
    ]


def _tiff_bytes(array: np.ndarray) -> bytes:
    """A float32 TIFF of ``array`` (one page per leading plane): a sample tensor that image
    viewers and ``imageio`` read, where the ``.npy`` test tensors need numpy."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(array, np.float32))
    return buf.getvalue()


def _forward(network, x: np.ndarray) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        outs = network(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    return [o.detach().float().cpu().numpy() for o in outs]


def _cover(image_cf: np.ndarray, labels: np.ndarray) -> bytes:
    """PNG, 2:1: the (normalised, clipped) input next to the labels coloured over it."""
    import imageio.v3 as iio

    grey = np.clip(image_cf[0], 0, 1)
    if grey.ndim == 3:  # 3D: the middle plane
        grey, labels = grey[grey.shape[0] // 2], labels[labels.shape[0] // 2]
    grey8 = (grey * 255).astype(np.uint8)
    rgb = np.repeat(grey8[..., None], 3, axis=-1).astype(np.float32)
    ids = labels.astype(np.uint64)
    # A fixed hash of the id: the same labels always give the same colours.
    palette = np.stack([(ids * k + 37) % 200 + 55 for k in (97, 57, 23)], axis=-1)
    overlay = np.where(labels[..., None] > 0, 0.35 * rgb + 0.65 * palette, rgb)
    both = np.concatenate([np.repeat(grey8[..., None], 3, axis=-1), overlay.astype(np.uint8)], 1)
    return iio.imwrite("<bytes>", both, extension=".png")


def _rdf_name(name: str) -> str:
    """The spec's model name: 5 to 64 letters, digits, ``_``, ``-`` or spaces."""
    text = "".join(ch if ch.isalnum() or ch in "_- " else "-" for ch in name)[:64]
    return text if len(text) >= 5 else f"napari-instseg {text}"


def _torchscript(network, x: np.ndarray, low: list[int], multiple: int) -> bytes | None:
    """The network traced to TorchScript, or None (logged) when the trace does not give the
    eager network's outputs at another input size than the one it was traced at."""
    import warnings

    import torch

    x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    example = x[(..., *map(slice, low))]
    # A second size (one step larger where the test input allows) catches traces that froze
    # the example's shape into the graph. Small inputs: tracing costs one forward pass.
    bigger = [min(n + multiple, m) for n, m in zip(low, x.shape[2:], strict=True)]
    other = x[(..., *map(slice, bigger))]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(network, example, check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
            same = all(
                torch.allclose(t, e, rtol=1e-4, atol=1e-4)
                for t, e in zip(traced(other), network(other), strict=True)
            )
    except Exception as err:  # tracing fails in many ways; the package is fine without it
        _log.warning("no TorchScript weights: tracing failed (%s: %s)", type(err).__name__, err)
        return None
    if not same:
        _log.warning("no TorchScript weights: the traced network differs from the eager one")
        return None
    return buf.getvalue()


def _tolerances(output_ids: list[str], outputs: list[np.ndarray]) -> list[dict]:
    """``config.bioimageio.reproducibility_tolerance``: one entry per output tensor.

    The spec's default absolute tolerance (1e-3) may not exceed 1 % of a test tensor's
    maximum, which small-valued heads (EmbedSeg's offsets, say) are below; each output gets
    ``min(1e-3, 1 % of its maximum)``, rounded down to two significant digits.
    """
    entries = []
    for out_id, array in zip(output_ids, outputs, strict=True):
        absolute = min(1e-3, 0.01 * float(array.max()))  # the caller made sure max > 0
        digits = 1 - int(np.floor(np.log10(absolute)))
        absolute = float(np.floor(absolute * 10**digits) / 10**digits)
        entries.append(
            {"output_ids": [out_id], "relative_tolerance": 1e-3, "absolute_tolerance": absolute}
        )
    return entries


def _channel_names(head: str, n: int, method: str) -> list[str]:
    if method == "threeclass" and head == "classes" and n == 3:
        return ["background", "interior", "boundary"]
    base = _identifier(head)
    return [base] if n == 1 else [f"{base}{i}" for i in range(n)]


def _min_sizes(test_shape: tuple[int, ...], multiple: int) -> list[int]:
    """Smallest input side per spatial axis: room for 4 halos, a multiple of the network's
    step, and never above the test input's (which must itself be a valid size)."""
    return [min(n, -(-4 * HALO // multiple) * multiple) for n in test_shape]


def _axes(
    ndim: int, *, channels: list[str], multiple: int | None = None, low: list[int] | None = None
) -> list[dict]:
    """Input axes (``multiple`` and per-axis ``low`` given) or output axes (sized like the
    input, with a halo the spec allows: ``min - 2 * halo >= 1``)."""
    axes: list[dict] = [{"type": "batch"}, {"type": "channel", "channel_names": channels}]
    for axis, smallest in zip(_SPATIAL[-ndim:], low, strict=True):
        if multiple is not None:
            size: dict = {"min": smallest, "step": multiple}
            axes.append({"type": "space", "id": axis, "size": size})
        else:
            size = {"tensor_id": INPUT_ID, "axis_id": axis}
            halo = min(HALO, (smallest - 1) // 2)
            axes.append({"type": "space", "id": axis, "size": size, "halo": halo})
    return axes


def _markdown_metrics(card) -> str:
    keys = ("ap@0.50", "ap@0.70", "f1@0.50", "n_images")
    rows = [
        f"| {split} | " + " | ".join(str(values.get(k, "-")) for k in keys) + " |"
        for split, values in (card.metrics or {}).items()
        if isinstance(values, dict) and "ap@0.50" in values
    ]
    if not rows:
        return "No metrics are recorded on the model card."
    protocol = (card.metrics or {}).get("protocol", "")
    head = ["| split | AP@0.5 | AP@0.7 | F1@0.5 | images |", "| --- | --- | --- | --- | --- |"]
    return "\n".join([*head, *rows, "", str(protocol)]).strip()


def _readme(card, outputs: list[str], stem: str, *, torchscript: bool) -> str:
    from ..modality import FLUORESCENCE

    knobs = json.dumps(card.backend_config, indent=2)
    training = card.training or {}
    lines = [
        f"# {card.name}",
        "",
        card.description or f"A napari-instseg {card.method} model.",
        "",
        "Exported by napari-instseg. The network's outputs are per-pixel maps, not labels: "
        f"napari-instseg turns them into instances with the **{card.method}** method's "
        f"decoding and the **{card.backend}** assembly back-end, with these knobs:",
        "",
        "```json",
        knobs,
        "```",
        "",
        "## Input",
        "",
        f"One {card.ndim}D image with {card.in_channels} channel(s), in the appearance the "
        f"model learnt ({card.modality or 'any modality'})"
        + (
            "; napari-instseg inverts dark-on-bright images for this fluorescence model "
            "first, which bioimage.io preprocessing cannot say"
            if card.modality == FLUORESCENCE
            else ""
        )
        + ". Each channel is scaled so that its "
        f"{(card.normalisation or {}).get('low', 1.0)} and "
        f"{(card.normalisation or {}).get('high', 99.8)} percentiles map to 0 and 1 "
        "(`scale_range`). Objects are best at about "
        f"{card.working_diameter or card.object_size or 'their training'} pixels across.",
        "",
        "## Outputs",
        "",
        "One tensor per network head: " + ", ".join(f"`{o}`" for o in outputs) + ". "
        "Crop the halo when tiling. Weights: `pytorch_state_dict` (its architecture file "
        "builds the network with the napari-instseg package)"
        + (" and `torchscript` (needs only PyTorch)." if torchscript else "."),
        "",
        "## Labels with napari-instseg",
        "",
        "```",
        "pip install napari-instseg",
        "napari-instseg models --import PACKAGE.zip",
        f"napari-instseg segment IMAGE.tif --model {card.name} --output OUT/",
        "```",
        "",
        f"The attachments `{stem}.json` (model card) and `{stem}.safetensors` (weights) are "
        "what napari-instseg imports; the card holds the post-processing above.",
        "",
        "## Training data",
        "",
        f"Data: {training.get('data', 'not recorded')}; split: {training.get('split', '-')}; "
        f"recipe: {training.get('recipe', '-')}."
        + (f" Fine-tuned from {card.parent}." if card.parent else ""),
        "",
        "## Validation",
        "",
        _markdown_metrics(card),
        "",
    ]
    return "\n".join(lines)


def _environment() -> str:
    import torch

    from ... import __version__

    return (
        "name: napari-instseg\n"
        "channels: [conda-forge]\n"
        "dependencies:\n"
        "  - python=3.11\n"
        "  - pip\n"
        "  - pip:\n"
        f"    - torch=={torch.__version__.split('+')[0]}\n"
        f"    - napari-instseg=={__version__}\n"
    )


# -- export ------------------------------------------------------------------------------------
def export_bioimageio(
    model,
    path: str | Path,
    *,
    backend: str | None = None,
    knobs: dict[str, Any] | None = None,
    name: str | None = None,
    image: np.ndarray | None = None,
    authors: list[dict[str, str]] | None = None,
    license: str = "BSD-3-Clause",
    torchscript: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a model as a bioimage.io model package (``.zip``, spec format 0.5).

    Parameters
    ----------
    model : str, Path, (card, net) or Model
        A model name, a card / weights path, what
        :func:`~napari_instseg.core.checkpoint.load_model` returns, or a loaded
        :class:`~napari_instseg.core.pipeline.Model` (e.g. fine-tuned, not saved yet).
    path : str or Path
        The package to write (``.zip``).
    backend, knobs : optional
        Post-processing to ship instead of the card's own (knob strings are converted).
    name : str, optional
        Model name in the package (default: the card's); a new name records the card's
        model as ``parent``.
    image : ndarray, optional
        Image to crop the test input from (default: the bundled sample that fits the
        model's dimensions and modality).
    authors : list of dict, optional
        bioimage.io authors (each with at least a ``name``).
    license : str
        SPDX licence id of the weights.
    torchscript : bool
        Add TorchScript weights (the network traced; what deepImageJ, QuPath and other
        Java-based tools run) when the trace reproduces the network on two input sizes.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    Path
        The package.

    Raises
    ------
    InputError
        For a model the spec cannot describe, bad knobs, or an existing ``path``.
    """
    import torch
    import yaml

    from .. import bioimageio_network
    from ..pipeline import Model, adapt_image, assemble_decoded, normalise_for
    from .model_copy import model_settings
    from .staging import check_target, staged_output

    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise InputError(f"{path.name}: a bioimage.io package is a .zip file")
    check_target(path, overwrite=overwrite, folder=False)
    card, net, weights = _load_source(model)
    card, weights = _weights_and_card(card, net, weights)
    if backend is not None or knobs:
        backend, tuned = model_settings(card, backend, knobs)
        card = replace(card, backend=backend, backend_config=tuned)
    if name is not None and name != card.name:
        if not name or name != _safe_stem(name):
            raise InputError(f"{name!r} is not usable as a model name (letters, digits, - _ .)")
        card = replace(card, name=name, parent=card.name)
    preprocessing = _preprocessing(card)
    loaded = Model.from_card(card, net)
    multiple = loaded.size_multiple

    # Test tensors: a crop of a real image in the model's appearance, and the outputs of
    # the network (the package's own architecture and weights) on it. The spec bounds an
    # output's reproduction tolerance by 1 % of its test tensor's maximum, so every output
    # must rise above 0 somewhere (allcell's boundary logits do not in the centre of the
    # nuclei sample): other windows, then the next bundled sample, are tried.
    network = None
    windows = (
        (image_cf, window)
        for candidate in (_default_images(card) if image is None else [image])
        for image_cf in [adapt_image(loaded, candidate)[0]]
        for window in _test_crops(image_cf, multiple)
    )
    for image_cf, window in windows:
        crop = np.ascontiguousarray(image_cf[window], np.float32)
        normalised = normalise_for(loaded, crop)
        low = _min_sizes(crop.shape[1:], multiple)
        if network is None:
            with torch.no_grad():  # the head names, in the network's order, from a small input
                heads = list(net(torch.from_numpy(normalised[None][(..., *map(slice, low))])))
            network = bioimageio_network.InstSegNetwork(card.method, card.method_config, heads)
            network.net.load_state_dict(net.state_dict())
            network.eval()
        outputs = _forward(network, normalised[None])
        flat = [h for h, array in zip(heads, outputs, strict=True) if not array.max() > 0]
        if not flat:
            break
    else:
        raise InputError(
            f"model {card.name!r}: its output {flat[0]!r} is nowhere above 0 on the test "
            f"{'image' if image is not None else 'images'}, and bioimage.io bounds an "
            "output's reproduction tolerance by its maximum; export with another image"
        )
    # Labels for the cover: what napari-instseg assembles from exactly these outputs.
    raw = {head: array[0] for head, array in zip(heads, outputs, strict=True)}
    constants = getattr(net, "raw_constants", None)
    raw.update(constants() if constants is not None else {})
    labels = assemble_decoded(loaded, loaded.method.decode(raw, loaded.config))

    scripted = _torchscript(network, normalised[None], low, multiple) if torchscript else None
    stem = _safe_stem(card.name)
    state = io.BytesIO()
    torch.save({k: v.detach().float().cpu() for k, v in network.state_dict().items()}, state)
    files: dict[str, bytes] = {
        "weights.pt": state.getvalue(),
        ARCHITECTURE_FILE: Path(bioimageio_network.__file__).read_bytes(),
        "environment.yaml": _environment().encode(),
        "test_input.npy": _npy_bytes(crop[None]),
        "sample_input.tif": _tiff_bytes(crop),
        "cover.png": _cover(normalised, labels),
        "README.md": _readme(
            card, [_identifier(h) for h in heads], stem, torchscript=scripted is not None
        ).encode(),
        f"{stem}.json": card.to_json().encode(),
        f"{stem}.safetensors": weights,
    }
    output_ids = [_identifier(h) for h in heads]
    if len(set(output_ids) | {INPUT_ID}) != len(heads) + 1:
        raise InputError(f"model {card.name!r}: its heads {heads} do not give distinct tensor ids")
    for out_id, array in zip(output_ids, outputs, strict=True):
        files[f"test_output_{out_id}.npy"] = _npy_bytes(array)
        files[f"sample_output_{out_id}.tif"] = _tiff_bytes(array[0])
    if scripted is not None:
        files["weights_torchscript.pt"] = scripted

    def described(name: str) -> dict:
        return {"source": name, "sha256": _sha256(files[name])}

    cites = [_UNET]
    if card.method in _METHOD_CITATIONS:
        cites.insert(0, _METHOD_CITATIONS[card.method])
    rdf = {
        "format_version": FORMAT_VERSION,
        "type": "model",
        "name": _rdf_name(card.name),
        "description": (card.description or f"napari-instseg {card.method} model")[:1024],
        "authors": [dict(a) for a in (authors or _DEFAULT_AUTHORS)],
        "cite": [dict(c) for c in cites],
        "license": license,
        "tags": sorted(
            {"napari-instseg", "instance-segmentation", "pytorch", f"{card.ndim}d", card.method}
            | ({card.modality} if card.modality not in ("", "auto") else set())
        ),
        "documentation": "README.md",
        "covers": ["cover.png"],
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "inputs": [
            {
                "id": INPUT_ID,
                "description": "image in the model's appearance, channel first",
                "axes": _axes(
                    card.ndim,
                    multiple=multiple,
                    low=low,
                    channels=[f"channel{i}" for i in range(card.in_channels)],
                ),
                "test_tensor": described("test_input.npy"),
                "sample_tensor": described("sample_input.tif"),
                "data": {"type": "float32"},
                "preprocessing": preprocessing,
            }
        ],
        "outputs": [
            {
                "id": out_id,
                "description": f"network head {head!r} ({card.method})",
                "axes": _axes(
                    card.ndim,
                    low=low,
                    channels=_channel_names(head, array.shape[1], card.method),
                ),
                "test_tensor": described(f"test_output_{out_id}.npy"),
                "sample_tensor": described(f"sample_output_{out_id}.tif"),
                "data": {"type": "float32"},
            }
            for head, out_id, array in zip(heads, output_ids, outputs, strict=True)
        ],
        "weights": {
            "pytorch_state_dict": {
                **described("weights.pt"),
                "architecture": {
                    **described(ARCHITECTURE_FILE),
                    "callable": ARCHITECTURE_CALLABLE,
                    "kwargs": {
                        "method": card.method,
                        "method_config": card.method_config,
                        "outputs": heads,
                    },
                },
                "pytorch_version": torch.__version__.split("+")[0],
                "dependencies": described("environment.yaml"),
            },
            **(
                {
                    "torchscript": {
                        **described("weights_torchscript.pt"),
                        "parent": "pytorch_state_dict",
                        "pytorch_version": torch.__version__.split("+")[0],
                    }
                }
                if scripted is not None
                else {}
            ),
        },
        "attachments": [described(f"{stem}.json"), described(f"{stem}.safetensors")],
        "config": {
            "bioimageio": {
                "reproducibility_tolerance": _tolerances(output_ids, outputs),
            },
            CONFIG_KEY: {
                "version": card.versions.get("napari_instseg", ""),
                "card": f"{stem}.json",
                "weights": f"{stem}.safetensors",
                "method": card.method,
                "backend": card.backend,
                "knobs": card.backend_config,
                "normalisation": card.normalisation,
                "modality": card.modality,
                "working_diameter": card.working_diameter,
                "training": {
                    k: v for k, v in (card.training or {}).items() if k in ("data", "split")
                },
                "metrics": {k: v for k, v in (card.metrics or {}).items() if k in ("val", "test")},
                "cover_objects": int(labels.max()),
            },
        },
    }
    files["rdf.yaml"] = yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True).encode()
    with staged_output(path, overwrite=overwrite, folder=False) as staged:
        with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("rdf.yaml", files.pop("rdf.yaml"))
            for name, data in files.items():
                # weights and PNG hardly compress: store them, deflate the rest
                packed = name.endswith((".pt", ".safetensors", ".png", ".tif"))
                zf.writestr(name, data, zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED)
    return path


# -- import ------------------------------------------------------------------------------------
def _bad(path: Path, text: str) -> InputError:
    return InputError(f"{path.name}: {text}")


def read_package(path: str | Path) -> tuple[dict, dict[str, bytes]]:
    """``(rdf, files)`` of a bioimage.io model package, every file it describes checked.

    Checks that the package is a zip with an ``rdf.yaml`` of a model in spec format 0.5,
    and that each file it names with a ``sha256`` is in the zip with that checksum.
    ``files`` holds the bytes of those files by name.

    Raises
    ------
    InputError
        With one line saying what is wrong.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise _bad(path, "no such file")
    if not zipfile.is_zipfile(path):
        raise _bad(path, "not a zip file; a bioimage.io model package is a .zip with rdf.yaml")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        rdf_name = next((n for n in ("rdf.yaml", "bioimageio.yaml") if n in names), None)
        if rdf_name is None:
            raise _bad(path, "no rdf.yaml inside: not a bioimage.io package")
        try:
            rdf = yaml.safe_load(zf.read(rdf_name))
        except yaml.YAMLError as err:
            raise _bad(path, f"rdf.yaml is not valid YAML ({' '.join(str(err).split())})") from err
        if not isinstance(rdf, dict) or rdf.get("type") != "model":
            raise _bad(path, "rdf.yaml does not describe a model")
        version = str(rdf.get("format_version", ""))
        if not version.startswith("0.5."):
            raise _bad(
                path,
                f"format_version {version or 'missing'}; napari-instseg imports model "
                f"packages in format 0.5 that it exported itself",
            )
        files: dict[str, bytes] = {}
        for entry in _described_files(rdf):
            name = str(PurePosixPath(entry["source"]))
            if name not in names:
                raise _bad(path, f"{name} is named in rdf.yaml but not in the package")
            data = zf.read(name)
            if entry.get("sha256") and _sha256(data) != entry["sha256"]:
                raise _bad(path, f"{name} does not match its sha256 in rdf.yaml")
            files[name] = data
    return rdf, files


def _described_files(rdf: dict) -> list[dict]:
    """Every ``{source, sha256}`` entry of a model rdf (local files only)."""
    found: list[dict] = []

    def walk(node):
        if isinstance(node, dict):
            source = node.get("source")
            if isinstance(source, str) and "://" not in source:
                found.append(node)
            for key, value in node.items():
                if key != "config":
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(rdf)
    for key in ("documentation",):
        if isinstance(rdf.get(key), str) and "://" not in rdf[key]:
            found.append({"source": rdf[key]})
    for cover in rdf.get("covers") or []:
        if isinstance(cover, str) and "://" not in cover:
            found.append({"source": cover})
    return found


def _our_files(path: Path, rdf: dict, files: dict[str, bytes]) -> tuple[bytes, bytes]:
    ours = (rdf.get("config") or {}).get(CONFIG_KEY)
    if not isinstance(ours, dict) or not ours.get("card") or not ours.get("weights"):
        raise _bad(
            path,
            "a bioimage.io model that napari-instseg did not export; only packages exported "
            "by napari-instseg (with config.napari_instseg and the model card attached) can be "
            "imported, since the post-processing to instances is on that card",
        )
    attached = {str(PurePosixPath(a.get("source", ""))) for a in rdf.get("attachments") or []}
    for name in (ours["card"], ours["weights"]):
        if name not in attached or name not in files:
            raise _bad(path, f"the attachment {name} named in config.{CONFIG_KEY} is missing")
    return files[ours["card"]], files[ours["weights"]]


def load_bioimageio(path: str | Path):
    """Load the model of a package napari-instseg exported, without installing it.

    Returns
    -------
    Model
        :class:`~napari_instseg.core.pipeline.Model` with the package's card (its
        post-processing knobs included) and network, its ``source`` the package path.

    Raises
    ------
    InputError
        For a package that is not a valid napari-instseg bioimage.io export.
    """
    from ..checkpoint import CheckpointError, load_model
    from ..pipeline import Model

    path = Path(path)
    rdf, files = read_package(path)
    card_bytes, weights = _our_files(path, rdf, files)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.json").write_bytes(card_bytes)
        (Path(tmp) / "model.safetensors").write_bytes(weights)
        try:
            card, net = load_model(Path(tmp) / "model.json")
        except CheckpointError as err:
            raise _bad(path, str(err).replace("model.safetensors", "the attached weights")) from err
    return Model.from_card(card, net, source=str(path))


def import_bioimageio(
    path: str | Path, directory: str | Path | None = None, *, overwrite: bool = False
) -> Path:
    """Install the model of a package napari-instseg exported as ``NAME.json`` +
    ``NAME.safetensors`` in ``directory`` (default: the user model folder, where the model
    picker and ``--model NAME`` find it).

    The package is checked first (files against their checksums, the card, the weights
    against the card's network). Importing the same package twice is allowed; replacing a
    different model of that name needs ``overwrite``.

    Returns
    -------
    Path
        The installed model card.
    """
    from ..checkpoint import _atomic_write_bytes
    from ..zoo import user_model_dir

    path = Path(path)
    model = load_bioimageio(path)  # validates everything before anything is written
    rdf, files = read_package(path)
    card_bytes, weights = _our_files(path, rdf, files)
    directory = Path(directory) if directory is not None else user_model_dir()
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is a file; choose a folder for the model")
    name = model.card.name
    if name != _safe_stem(name):
        raise _bad(path, f"model name {name!r} is not usable as a file name")
    card_path, weights_path = directory / f"{name}.json", directory / f"{name}.safetensors"
    same = (
        card_path.is_file()
        and weights_path.is_file()
        and card_path.read_bytes() == card_bytes
        and weights_path.read_bytes() == weights
    )
    if same:
        return card_path
    existing = [p.name for p in (card_path, weights_path) if p.exists()]
    if existing and not overwrite:
        raise InputError(
            f"a different model {name!r} is already in {directory} ({', '.join(existing)}); "
            "allow overwriting to replace it"
        )
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(weights_path, weights)  # weights first: a card never points at nothing
    _atomic_write_bytes(card_path, card_bytes)
    return card_path
