"""The Omnipose-style ``flows`` method: targets from sparse labels, loss, decoding."""

from __future__ import annotations

import numpy as np
import torch

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.flow_fields import labels_to_fields
from napari_instseg.core.methods import get_method

METHOD = get_method("flows")


def _cfg(**kw):
    return METHOD.config_type(depth=2, width=4, **kw)


def _labels():
    labels = np.zeros((24, 24), np.uint32)
    labels[2:10, 2:10] = 1
    labels[2:10, 10:18] = 2  # touches 1
    labels[14:22, 12:20] = 3
    known = (labels == 1) | (labels == 2)
    known[:, 21:] = True  # painted background
    return labels, known


def _batch(targets):
    return {k: torch.from_numpy(v[None]) for k, v in targets.items()}


def test_targets_from_sparse_labels():
    labels, known = _labels()
    t = METHOD.make_targets(labels, known, _cfg())
    fields = labels_to_fields(labels)
    assert t["flow"].shape == (2, 24, 24) and t["flow"].dtype == np.float32
    np.testing.assert_allclose(t["flow"], 5.0 * fields.flow)
    assert (t["distance"][labels == 0] == -5.0).all()
    np.testing.assert_allclose(t["distance"][labels > 0], fields.distance[labels > 0])
    np.testing.assert_array_equal(t["boundary"] > 0, fields.boundary)
    np.testing.assert_array_equal(t["known"], known)
    np.testing.assert_array_equal(t["inside"], labels > 0)


def test_targets_in_3d_and_an_object_that_fills_the_crop():
    labels = np.zeros((6, 10, 10), np.uint32)
    labels[1:5, 2:8, 2:8] = 7
    t = METHOD.make_targets(labels, np.ones(labels.shape, bool), _cfg(ndim=3))
    assert t["flow"].shape == (3, 6, 10, 10)
    assert t["distance"][3, 5, 5] > t["distance"][1, 2, 2] > 0
    full = METHOD.make_targets(np.ones((8, 8), np.uint32), np.ones((8, 8), bool), _cfg())
    assert not full["known"].any()  # no boundary in sight: nothing to supervise


def _outputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "flow": torch.randn(1, 2, 24, 24, generator=g, requires_grad=True),
        "distance": torch.randn(1, 1, 24, 24, generator=g, requires_grad=True),
        "boundary": torch.randn(1, 1, 24, 24, generator=g, requires_grad=True),
    }


def test_loss_ignores_unknown_pixels():
    labels, known = _labels()
    targets = _batch(METHOD.make_targets(labels, known, _cfg()))
    out = _outputs()
    loss = METHOD.make_loss(_cfg())(out, targets)
    loss.backward()
    unknown = torch.from_numpy(~known)
    for head in ("flow", "distance", "boundary"):
        grad = out[head].grad[0]
        assert not grad[:, unknown].any(), head
        assert grad[:, torch.from_numpy(known)].abs().sum() > 0, head


def test_loss_is_near_zero_for_perfect_outputs_and_weights_apply():
    labels, known = _labels()
    t = METHOD.make_targets(labels, known, _cfg())
    targets = _batch(t)
    perfect = {
        "flow": torch.from_numpy(t["flow"][None]),
        "distance": torch.from_numpy(t["distance"][None, None]),
        "boundary": torch.from_numpy((40.0 * t["boundary"] - 20.0)[None, None]),
    }
    assert METHOD.make_loss(_cfg())(perfect, targets).item() < 1e-6
    out = {k: v.detach() for k, v in _outputs().items()}
    base = METHOD.make_loss(_cfg())(out, targets).item()
    for weight in ("w_flow", "w_distance", "w_boundary"):
        assert METHOD.make_loss(_cfg(**{weight: 0.0}))(out, targets).item() < base


def test_decode_of_target_outputs_segments_the_labels():
    labels, _ = _labels()
    t = METHOD.make_targets(labels, np.ones(labels.shape, bool), _cfg())
    raw = {
        "flow": t["flow"],
        "distance": t["distance"][None],
        "boundary": (8.0 * t["boundary"] - 4.0)[None],
    }
    arrays = METHOD.decode(raw, _cfg())
    assert arrays["flow"].shape == (2, 24, 24)
    np.testing.assert_allclose(np.sqrt((arrays["flow"] ** 2).sum(0))[labels > 0].max(), 1.0)
    assert 0.0 <= arrays["foreground"].min() and arrays["foreground"].max() <= 1.0
    assert ((arrays["boundary"] > 0.5) == (t["boundary"] > 0)).all()
    found = get_backend(METHOD.default_backend)(arrays)
    for i in (1, 2, 3):
        ids = np.unique(found[labels == i])
        assert ids.size == 1 and ids[0] > 0
        np.testing.assert_array_equal(found == ids[0], labels == i)


def test_record():
    assert METHOD.sparse_labels and METHOD.supports_tta
    assert METHOD.head_kinds["flow"] == "vector"
    assert dict(METHOD.heads(_cfg(ndim=3))) == {"flow": 3, "distance": 1, "boundary": 1}
