"""Segmentation methods, one module each; the registry is written out by hand."""

from __future__ import annotations

from ..arrays import InputError
from . import affinity, allcell, embedseg, flows, patchperpix, spoco, threeclass
from .base import Intermediate, Method, Raw

_METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        threeclass.METHOD,
        embedseg.METHOD,
        spoco.METHOD,
        affinity.METHOD,
        flows.METHOD,
        allcell.METHOD,
        patchperpix.METHOD,
    )
}


def get_method(name: str) -> Method:
    """The method called ``name``; ``InputError`` (a ``ValueError``) listing the known ones
    otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise InputError(f"unknown method {name!r}; known: {sorted(_METHODS)}") from None


def list_methods() -> list[str]:
    """Names of all registered methods."""
    return sorted(_METHODS)


__all__ = ["Intermediate", "Method", "Raw", "get_method", "list_methods"]
