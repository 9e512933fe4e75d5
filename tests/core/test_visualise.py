"""Direction colours of vector fields."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.visualise import vectors_to_rgb


def test_direction_sets_hue_and_length_sets_brightness():
    v = np.zeros((2, 1, 4), np.float32)
    v[:, 0, 0] = (0, 1)  # pointing along +x: hue 0, red
    v[:, 0, 1] = (0, -1)  # along -x: hue 0.5, cyan
    v[:, 0, 2] = (0, 0.5)  # half as long: half as bright
    rgb = vectors_to_rgb(v, saturation_percentile=100)
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(rgb[0, 1], [0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(rgb[0, 2], [0.5, 0, 0], atol=1e-6)
    np.testing.assert_allclose(rgb[0, 3], [0, 0, 0], atol=1e-6)  # no displacement: black


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="vector field"):
        vectors_to_rgb(np.zeros((3, 4, 4)))
