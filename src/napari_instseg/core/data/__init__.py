"""Data: the shared folder layout, normalisation, augmentation and sparse annotation."""

from .augment import AugmentConfig, augment_sample, random_crop
from .datasets import Sample, load_folder, read_image, read_split
from .normalise import normalise_percentile
from .sparse import sparsify_instances

__all__ = [
    "AugmentConfig",
    "Sample",
    "augment_sample",
    "load_folder",
    "normalise_percentile",
    "random_crop",
    "read_image",
    "read_split",
    "sparsify_instances",
]
