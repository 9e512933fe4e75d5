"""Losses shared by the methods; every one of them honours a mask of known pixels."""

from .discriminative import (
    DiscriminativeWeights,
    consistency_term,
    discriminative_terms,
    kernel_scale,
    soft_dice,
)
from .lovasz import lovasz_hinge_flat
from .masking import known_instances, masked_cross_entropy, masked_mean

__all__ = [
    "DiscriminativeWeights",
    "consistency_term",
    "discriminative_terms",
    "kernel_scale",
    "known_instances",
    "lovasz_hinge_flat",
    "masked_cross_entropy",
    "masked_mean",
    "soft_dice",
]
