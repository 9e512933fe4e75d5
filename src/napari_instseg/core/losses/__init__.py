"""Losses shared by the methods; every one of them honours a mask of known pixels."""

from .lovasz import lovasz_hinge_flat
from .masking import masked_cross_entropy, masked_mean

__all__ = ["lovasz_hinge_flat", "masked_cross_entropy", "masked_mean"]
