"""Losses shared by the methods; every one of them honours a mask of known pixels."""

from .masking import masked_cross_entropy, masked_mean

__all__ = ["masked_cross_entropy", "masked_mean"]
