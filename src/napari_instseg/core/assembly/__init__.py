"""Assembly back-ends: pure functions from network-derived arrays to instance labels.

Every back-end follows one contract, tested once for all of them: it takes a mapping of named
arrays (``Intermediate``), its config (a frozen dataclass whose defaults are the only place a
knob's default is written; ``None`` means the defaults), an optional ``mask`` and ``rng``, and
returns ``uint32`` labels of the input's spatial shape with 0 as background and ids 1..N
consecutive, deterministic for a fixed ``rng``. Label helpers the back-ends share live in
:mod:`.labels`. The registry is written out by hand below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from ..arrays import InputError
from .clustering import (
    ConsistencyConfig,
    HdbscanConfig,
    MeanShiftConfig,
    cluster_consistency,
    cluster_hdbscan,
    cluster_meanshift,
)
from .detection import DetectionWatershedConfig, choose_route, segment_detection_watershed
from .flows import FlowDynamicsConfig, segment_flow_dynamics
from .mutex import MutexWatershedConfig, segment_mutex_watershed
from .patches import PatchConsensusConfig, segment_patch_consensus
from .seeds import SeedsConfig, cluster_seeds
from .watershed import ComponentsConfig, WatershedConfig, segment_components, segment_watershed


@dataclass(frozen=True)
class Backend:
    """An assembly back-end: its function, knob dataclass and the arrays it needs.

    ``describe``, when given, is ``(arrays, config) -> dict``: a short report of the choices
    the back-end makes on these arrays (e.g. which route it takes), for display.
    """

    name: str
    fn: Callable[..., np.ndarray]
    config_type: type
    requires: tuple[str, ...]
    description: str
    describe: Callable[..., dict] | None = None

    def default_config(self):
        return self.config_type()

    def knob_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.config_type))

    def __call__(self, arrays, *, mask=None, config=None, rng=None) -> np.ndarray:
        missing = [k for k in self.requires if k not in arrays]
        if missing:
            raise ValueError(f"back-end {self.name!r} needs arrays {missing}")
        return self.fn(arrays, config, mask=mask, rng=rng)


_BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "watershed",
            segment_watershed,
            WatershedConfig,
            ("foreground", "interior"),
            "seeded watershed: interior seeds flood the foreground",
        ),
        Backend(
            "components",
            segment_components,
            ComponentsConfig,
            ("interior",),
            "connected components of the interior, grown back to the object edge",
        ),
        Backend(
            "seeds",
            cluster_seeds,
            SeedsConfig,
            ("embedding", "bandwidth", "seediness"),
            "EmbedSeg greedy seed clustering",
        ),
        Backend(
            "meanshift",
            cluster_meanshift,
            MeanShiftConfig,
            ("pixel_embedding",),
            "mean-shift clustering of the foreground pixel embeddings",
        ),
        Backend(
            "hdbscan",
            cluster_hdbscan,
            HdbscanConfig,
            ("pixel_embedding",),
            "HDBSCAN on a subsample of the foreground embeddings, spread by nearest neighbour",
        ),
        Backend(
            "consistency",
            cluster_consistency,
            ConsistencyConfig,
            ("pixel_embedding", "pixel_embedding_g"),
            "mean-shift, keeping clusters that the momentum network's view reproduces",
        ),
        Backend(
            "mutex_watershed",
            segment_mutex_watershed,
            MutexWatershedConfig,
            ("affinities", "affinity_offsets"),
            "mutex watershed: short-range affinities attract, long-range ones repel",
        ),
        Backend(
            "flow_dynamics",
            segment_flow_dynamics,
            FlowDynamicsConfig,
            ("flow", "distance"),
            "Omnipose flow dynamics: foreground pixels follow the flows; end-point clouds "
            "are objects",
        ),
        Backend(
            "detection_watershed",
            segment_detection_watershed,
            DetectionWatershedConfig,
            ("foreground", "height", "boxes", "box_scores"),
            "All-Cell Segmenter: detected boxes seed a watershed on the predicted height; "
            "phase contrast may fall back on the flows branch (2D)",
            describe=choose_route,
        ),
        Backend(
            "patch_consensus",
            segment_patch_consensus,
            PatchConsensusConfig,
            ("foreground", "patches", "patch_pixels", "patch_shape"),
            "PatchPerPix: patches vote on pixel pairs; the best-agreeing patches cover the "
            "foreground and their graph is cut",
        ),
    )
}


def get_backend(name: str) -> Backend:
    """The back-end called ``name``; ``InputError`` (a ``ValueError``) listing the known ones
    otherwise."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise InputError(f"unknown back-end {name!r}; known: {sorted(_BACKENDS)}") from None


def list_backends() -> list[str]:
    """Names of all registered back-ends."""
    return sorted(_BACKENDS)
