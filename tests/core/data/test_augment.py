"""Tests for napari_instseg.core.data.augment: crops and augmentations keep things aligned."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.data import AugmentConfig, augment_sample, random_crop

NO_JITTER = AugmentConfig(intensity_scale=0.0, intensity_shift=0.0)


def _scene(shape, seed=0):
    """Labels with unique ids per pixel region, image = labels as float, known = labels odd."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 50, size=shape).astype(np.uint32)
    image = labels.astype(np.float32)[None]
    known = labels % 2 == 1
    return image, labels, known


@pytest.mark.parametrize("shape", [(16, 16), (12, 20), (4, 8, 8), (3, 6, 10)])
def test_augment_keeps_image_labels_known_aligned(shape):
    image, labels, known = _scene(shape)
    changed = 0
    for seed in range(12):
        img, lab, kn = augment_sample(
            image, labels, known, config=NO_JITTER, rng=np.random.default_rng(seed)
        )
        assert img.shape == (1, *lab.shape) and kn.shape == lab.shape
        assert img.dtype == np.float32 and lab.dtype == labels.dtype and kn.dtype == bool
        np.testing.assert_array_equal(img[0], lab.astype(np.float32))
        np.testing.assert_array_equal(kn, lab % 2 == 1)
        assert img.flags.c_contiguous and lab.flags.c_contiguous and kn.flags.c_contiguous
        # the content is a permutation of the original (flips/rotations only)
        np.testing.assert_array_equal(np.sort(lab, axis=None), np.sort(labels, axis=None))
        changed += not np.array_equal(lab, labels) if lab.shape == labels.shape else 1
    assert changed > 0  # something actually happened


def test_rot90_only_for_square_planes():
    image, labels, known = _scene((12, 20))
    cfg = AugmentConfig(flips=False, intensity_scale=0, intensity_shift=0)
    for seed in range(8):
        _, lab, _ = augment_sample(
            image, labels, known, config=cfg, rng=np.random.default_rng(seed)
        )
        np.testing.assert_array_equal(lab, labels)


def test_rot90_of_square_images_produces_rotations():
    image, labels, known = _scene((8, 8))
    cfg = AugmentConfig(flips=False, intensity_scale=0, intensity_shift=0)
    rotations = [np.rot90(labels, k) for k in range(4)]
    seen = set()
    for seed in range(20):
        _, lab, _ = augment_sample(
            image, labels, known, config=cfg, rng=np.random.default_rng(seed)
        )
        matches = [k for k, r in enumerate(rotations) if np.array_equal(lab, r)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {0, 1, 2, 3}


def test_no_augmentation_is_identity():
    image, labels, known = _scene((10, 10))
    cfg = AugmentConfig(flips=False, rot90=False, intensity_scale=0, intensity_shift=0)
    img, lab, kn = augment_sample(image, labels, known, config=cfg, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(img, image)
    np.testing.assert_array_equal(lab, labels)
    np.testing.assert_array_equal(kn, known)


def test_intensity_jitter_is_affine_within_bounds():
    image, labels, known = _scene((10, 10))
    cfg = AugmentConfig(flips=False, rot90=False, intensity_scale=0.2, intensity_shift=0.1)
    img, lab, _ = augment_sample(image, labels, known, config=cfg, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(lab, labels)
    x, y = image.ravel(), img.ravel()
    scale, shift = np.polyfit(x, y, 1)
    np.testing.assert_allclose(y, scale * x + shift, atol=1e-3)
    assert 0.8 <= scale <= 1.2 and -0.1 <= shift <= 0.1
    assert not np.isclose(scale, 1) or not np.isclose(shift, 0)


@pytest.mark.parametrize("shape,size", [((40, 50), (16, 16)), ((6, 30, 30), (4, 16, 16))])
def test_random_crop_is_aligned_and_inside(shape, size):
    image, labels, known = _scene(shape)
    for seed in range(10):
        img, lab, kn = random_crop(image, labels, known, size, rng=np.random.default_rng(seed))
        assert lab.shape == size and img.shape == (1, *size) and kn.shape == size
        np.testing.assert_array_equal(img[0], lab.astype(np.float32))
        np.testing.assert_array_equal(kn, lab % 2 == 1)


def test_random_crop_windows_come_from_the_image():
    labels = np.arange(30 * 40, dtype=np.uint32).reshape(30, 40)  # every pixel unique
    image = labels.astype(np.float32)[None]
    known = np.ones(labels.shape, bool)
    _, lab, _ = random_crop(image, labels, known, (8, 8), rng=np.random.default_rng(0))
    y, x = np.unravel_index(lab[0, 0], labels.shape)
    np.testing.assert_array_equal(lab, labels[y : y + 8, x : x + 8])


def test_random_crop_pads_small_images_with_unknown():
    image, labels, known = _scene((20, 12))
    known[:] = True
    img, lab, kn = random_crop(image, labels, known, (32, 32), rng=np.random.default_rng(0))
    assert lab.shape == (32, 32) and img.shape == (1, 32, 32)
    np.testing.assert_array_equal(lab[:20, :12], labels)
    np.testing.assert_array_equal(img[0, :20, :12], image[0])
    assert kn[:20, :12].all()
    assert not kn[20:].any() and not kn[:, 12:].any()
    assert not lab[20:].any() and not img[0, :, 12:].any()


def test_random_crop_pads_only_short_axes():
    image, labels, known = _scene((10, 40))
    known[:] = True
    img, lab, kn = random_crop(image, labels, known, (16, 16), rng=np.random.default_rng(1))
    assert lab.shape == (16, 16)
    assert kn[:10].all() and not kn[10:].any()


def test_foreground_crop_contains_a_known_object():
    labels = np.zeros((100, 100), np.uint32)
    labels[80:84, 5:9] = 1
    known = np.ones(labels.shape, bool)
    image = labels.astype(np.float32)[None]
    for seed in range(10):
        _, lab, _ = random_crop(
            image, labels, known, (24, 24), rng=np.random.default_rng(seed), foreground_prob=1.0
        )
        assert lab.any()


def test_foreground_crop_ignores_unknown_objects():
    labels = np.zeros((100, 100), np.uint32)
    labels[80:84, 5:9] = 1
    labels[5:9, 80:84] = 2
    known = labels != 1
    image = labels.astype(np.float32)[None]
    for seed in range(10):
        _, lab, _ = random_crop(
            image, labels, known, (24, 24), rng=np.random.default_rng(seed), foreground_prob=1.0
        )
        assert (lab == 2).any() and not (lab == 1).any()
