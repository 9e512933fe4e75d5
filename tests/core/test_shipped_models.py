"""Every model shipped in the zoo loads (card fits weights) and segments real data.

Each model runs on a 192² crop of the bundled sample of its own modality (a model for any
modality, like ``allcell``, on the sample of each), with its card's
back-end and knobs, and its objects must cover the ground truth's foreground (IoU > 0.5) and
match some of its objects. This checks that weights, card and back-end fit together on real
data; the accuracy claims are the cards' test-split numbers. The full test-split
numbers on the cards are reproduced by ``recipes/verify_card.sh`` (too slow for CI).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.jobs import run
from napari_instseg.core.metrics import average_precision_dsb
from napari_instseg.core.pipeline import load_model, segment_image
from napari_instseg.core.samples import load_sample
from napari_instseg.core.zoo import list_models, zoo_dir

SAMPLE = {
    "fluorescence": "nuclei2d_dsb_stardist",
    "phase-contrast": "phase2d_usiigaci_set1_crop512",
}
SHIPPED = sorted(
    (card.name, modality)
    for card, path in list_models()
    if path.parent == zoo_dir()
    for modality in ([card.modality] if card.modality else list(SAMPLE))
)


@pytest.mark.parametrize(("name", "modality"), SHIPPED)
def test_shipped_model_segments_its_sample(name, modality):
    model = load_model(name)
    image, truth = load_sample(SAMPLE[modality])
    crop = (slice(64, 256), slice(64, 256))
    result = run(segment_image(model, image[crop]))
    labels = result.labels
    assert labels.shape == (192, 192) and labels.dtype == np.uint32
    assert labels.max() >= 1
    np.testing.assert_array_equal(np.unique(labels), np.arange(labels.max() + 1))
    fg_true, fg_pred = truth[crop] > 0, labels > 0
    assert (fg_true & fg_pred).sum() / (fg_true | fg_pred).sum() > 0.5
    assert average_precision_dsb(truth[crop], labels, iou_threshold=0.5) > 0.05
