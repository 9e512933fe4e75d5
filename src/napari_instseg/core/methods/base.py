"""The shared shape of a method: a frozen record of functions, not a class hierarchy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: Network outputs by head name, channel-first ``(C, *spatial)`` (one image, no batch axis).
Raw = Mapping[str, np.ndarray]
#: Arrays derived from ``Raw`` that assembly back-ends read (probabilities, embeddings ...).
Intermediate = dict[str, np.ndarray]


@dataclass(frozen=True)
class Method:
    """Everything the library needs to train and run one segmentation method.

    Attributes
    ----------
    name : str
    config_type : type
        Frozen dataclass; its defaults are the paper's.
    heads : callable(cfg) -> tuple of (name, channels)
        The network's output heads.
    build_net : callable(cfg) -> torch.nn.Module
        Network whose ``forward`` returns a dict of head tensors.
    make_targets : callable(labels, known, cfg) -> dict of numpy arrays
        Per-sample training targets from (possibly sparse) labels; ``known`` marks pixels
        whose label is known.
    make_loss : callable(cfg) -> callable(outputs, targets) -> scalar tensor
        ``outputs`` and ``targets`` are batched dicts of tensors.
    decode : callable(raw, cfg) -> Intermediate
        Network outputs (one image) to the arrays the back-ends need.
    default_backend : str
    backends : tuple of str
        Back-ends that can assemble this method's intermediate arrays.
    head_kinds : dict of head name -> 'scalar' | 'vector' | 'axes'
        How each head's channels behave under flips and 90-degree rotations, which is what
        test-time augmentation needs to average outputs in the image's own frame:
        'scalar' channels only move with the pixels; 'vector' channels are one displacement
        (one component per spatial axis, ZYX order) that also turns and flips; 'axes'
        channels hold one value per spatial axis (e.g. a per-axis bandwidth) that swap
        when Y and X swap. A method without ``head_kinds`` has no TTA.
    sparse_labels : bool
        Its loss uses only the known pixels, so it can learn (and be fine-tuned) from a few
        annotated objects with the rest of the image left unlabelled.
    ndims : tuple of int
        Spatial dimensionalities the method supports.
    fit_config : callable(cfg, label images) -> cfg, optional
        Fills in what a config derives from the training data (e.g. anchor sizes) before the
        network is built for training from scratch.
    """

    name: str
    config_type: type
    heads: Callable[[Any], tuple[tuple[str, int], ...]]
    build_net: Callable[[Any], torch.nn.Module]
    make_targets: Callable[[np.ndarray, np.ndarray, Any], dict[str, np.ndarray]]
    make_loss: Callable[[Any], Callable[[dict, dict], torch.Tensor]]
    decode: Callable[[Raw, Any], Intermediate]
    default_backend: str
    backends: tuple[str, ...]
    description: str
    head_kinds: dict[str, str] = field(default_factory=dict)
    sparse_labels: bool = False
    ndims: tuple[int, ...] = (2, 3)
    fit_config: Callable[[Any, list], Any] | None = None

    @property
    def supports_tta(self) -> bool:
        return bool(self.head_kinds)
