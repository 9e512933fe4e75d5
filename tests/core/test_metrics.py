"""Tests for napari_instseg.core.metrics on hand-made label images."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label

from napari_instseg.core.metrics import (
    DSB_THRESHOLDS,
    Matching,
    average_precision_dsb,
    evaluate_pair,
    f1,
    iou_matrix,
    match_instances,
    mean_average_precision_dsb,
    precision,
    recall,
    summarise,
    symmetric_best_dice,
)

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _boxes(shape: tuple[int, ...], boxes: dict[int, tuple[slice, ...]], dtype=np.int32):
    """Label image with the given id -> box (tuple of slices)."""
    img = np.zeros(shape, dtype=dtype)
    for obj_id, box in boxes.items():
        img[box] = obj_id
    return img


def _random_blobs(seed: int, shape=(96, 128)) -> np.ndarray:
    """Random blobs labelled with shuffled, non-consecutive ids."""
    rng = np.random.default_rng(seed)
    smooth = ndi.gaussian_filter(rng.random(shape), sigma=3)
    lab = label(smooth > np.quantile(smooth, 0.6))
    n = int(lab.max())
    new_ids = rng.choice(np.arange(1, 100 * n), size=n, replace=False) * 7 + 3
    lut = np.concatenate([[0], new_ids]).astype(np.int64)
    return lut[lab]


def _naive_ious(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Reference IoU matrix with an explicit loop over object pairs."""
    t_ids = [i for i in np.unique(true) if i != 0]
    p_ids = [j for j in np.unique(pred) if j != 0]
    out = np.zeros((len(t_ids), len(p_ids)))
    for a, i in enumerate(t_ids):
        for b, j in enumerate(p_ids):
            inter = np.sum((true == i) & (pred == j))
            union = np.sum((true == i) | (pred == j))
            out[a, b] = inter / union
    return out


# Four 10x10 squares in a 40x40 image.
SQUARES = {
    1: (slice(0, 10), slice(0, 10)),
    2: (slice(0, 10), slice(20, 30)),
    3: (slice(20, 30), slice(0, 10)),
    4: (slice(20, 30), slice(20, 30)),
}


# ---------------------------------------------------------------------------
# iou_matrix
# ---------------------------------------------------------------------------


def test_iou_matrix_shifted_square_is_one_third():
    # Two 10x10 squares overlapping by 5 columns: 50 / 150.
    true = _boxes((10, 20), {1: (slice(0, 10), slice(0, 10))})
    pred = _boxes((10, 20), {9: (slice(0, 10), slice(5, 15))})
    ious, t_ids, p_ids = iou_matrix(true, pred)
    assert ious.shape == (1, 1)
    assert ious[0, 0] == 1 / 3
    assert t_ids.tolist() == [1]
    assert p_ids.tolist() == [9]


def test_iou_matrix_matches_naive_loop():
    true = _random_blobs(0)
    pred = _random_blobs(1)
    ious, t_ids, p_ids = iou_matrix(true, pred)
    np.testing.assert_allclose(ious, _naive_ious(true, pred), rtol=0, atol=1e-15)
    assert t_ids.tolist() == sorted(set(np.unique(true).tolist()) - {0})
    assert p_ids.tolist() == sorted(set(np.unique(pred).tolist()) - {0})


def test_iou_matrix_empty_images():
    empty = np.zeros((8, 8), dtype=np.uint16)
    one = _boxes((8, 8), {5: (slice(0, 4), slice(0, 4))}, dtype=np.uint16)
    ious, t_ids, p_ids = iou_matrix(empty, empty)
    assert ious.shape == (0, 0) and t_ids.size == 0 and p_ids.size == 0
    ious, t_ids, p_ids = iou_matrix(empty, one)
    assert ious.shape == (0, 1) and p_ids.tolist() == [5]
    ious, t_ids, p_ids = iou_matrix(one, empty)
    assert ious.shape == (1, 0) and t_ids.tolist() == [5]


def test_iou_matrix_zero_size_images():
    ious, t_ids, p_ids = iou_matrix(np.zeros((0, 5), int), np.zeros((0, 5), int))
    assert ious.shape == (0, 0)


def test_huge_non_consecutive_ids():
    true = _boxes((10, 20), {2**31: (slice(0, 10), slice(0, 10))}, dtype=np.int64)
    pred = _boxes(
        (10, 20),
        {2**40 + 1: (slice(0, 10), slice(5, 15)), 3: (slice(0, 10), slice(15, 20))},
        dtype=np.int64,
    )
    ious, t_ids, p_ids = iou_matrix(true, pred)
    assert t_ids.tolist() == [2**31]
    assert p_ids.tolist() == [3, 2**40 + 1]
    assert ious.tolist() == [[0.0, 1 / 3]]
    m = match_instances(true, pred, iou_threshold=0.3)
    assert m.true_ids.tolist() == [2**31]
    assert m.pred_ids.tolist() == [2**40 + 1]


def test_uint64_ids_above_int64_range():
    big = np.uint64(2**63 + 5)
    true = np.zeros((6, 6), dtype=np.uint64)
    true[:3] = big
    pred = np.zeros((6, 6), dtype=np.uint64)
    pred[:3] = np.uint64(2**64 - 1)
    ious, t_ids, p_ids = iou_matrix(true, pred)
    assert ious.tolist() == [[1.0]]
    assert int(t_ids[0]) == 2**63 + 5
    assert int(p_ids[0]) == 2**64 - 1


def test_huge_ids_give_same_ious_as_small_ids():
    true = _random_blobs(2)
    pred = _random_blobs(3)
    small, _, _ = iou_matrix(true, pred)
    huge, _, _ = iou_matrix(true * 2**33, pred * 2**33 + (pred > 0))
    np.testing.assert_array_equal(small, huge)


def test_3d_input():
    # Two 4x4x4 cubes shifted by 2 planes: 32 / 96.
    true = _boxes((8, 4, 4), {1: (slice(0, 4), slice(None), slice(None))})
    pred = _boxes((8, 4, 4), {2: (slice(2, 6), slice(None), slice(None))})
    ious, _, _ = iou_matrix(true, pred)
    assert ious.tolist() == [[1 / 3]]
    assert average_precision_dsb(true, pred, iou_threshold=0.3) == 1.0
    assert average_precision_dsb(true, pred, iou_threshold=0.5) == 0.0
    row = evaluate_pair(true, true)
    assert row["map@0.50:0.95"] == 1.0 and row["sbd"] == 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(10, 20\).*\(10, 21\)"):
        iou_matrix(np.zeros((10, 20), int), np.zeros((10, 21), int))
    with pytest.raises(ValueError, match="same shape"):
        evaluate_pair(np.zeros((4, 4), int), np.zeros((4, 4, 1), int))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), dtype=np.float32), -np.ones((4, 4), dtype=np.int32), np.int64(3)],
)
def test_invalid_labels_raise(bad):
    good = np.zeros(np.shape(bad), dtype=np.int32)
    with pytest.raises(ValueError):
        iou_matrix(good, bad)


@pytest.mark.parametrize("t", [0.0, -0.1, 1.5, float("nan")])
def test_invalid_threshold_raises(t):
    img = _boxes((40, 40), SQUARES)
    with pytest.raises(ValueError, match="iou_threshold"):
        average_precision_dsb(img, img, iou_threshold=t)
    with pytest.raises(ValueError, match="iou_threshold"):
        evaluate_pair(img, img, thresholds=(0.5, t))


def test_bool_input_is_one_object():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    ious, t_ids, _ = iou_matrix(a, a)
    assert ious.tolist() == [[1.0]] and t_ids.tolist() == [1]


# ---------------------------------------------------------------------------
# Perfect prediction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ground_truth_against_itself_scores_one(seed):
    true = _random_blobs(seed)
    n = len(np.unique(true)) - 1
    assert n > 5
    # Same objects under different (shuffled) ids.
    rng = np.random.default_rng(seed + 100)
    ids = np.unique(true)[1:]
    lut = dict(zip(ids.tolist(), (rng.permutation(n) + 1).tolist(), strict=True))
    pred = np.vectorize(lambda v: lut.get(v, 0))(true)

    for t in (0.1, 0.5, 0.75, 0.95, 1.0):
        assert average_precision_dsb(true, pred, iou_threshold=t) == 1.0
        assert precision(true, pred, iou_threshold=t) == 1.0
        assert recall(true, pred, iou_threshold=t) == 1.0
        assert f1(true, pred, iou_threshold=t) == 1.0
    assert symmetric_best_dice(true, pred) == 1.0
    assert mean_average_precision_dsb(true, pred) == 1.0
    m = match_instances(true, pred)
    assert (m.tp, m.fp, m.fn, m.n_true, m.n_pred) == (n, 0, 0, n, n)
    assert [lut[i] for i in m.true_ids.tolist()] == m.pred_ids.tolist()
    assert np.all(m.ious == 1.0)
    row = evaluate_pair(true, pred)
    for key, value in row.items():
        if key not in ("n_true", "n_pred"):
            assert value == 1.0, key
    assert row["n_true"] == n and row["n_pred"] == n


# ---------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------


def test_missing_and_false_object():
    true = _boxes((40, 40), SQUARES)
    # Squares 1, 2, 3 found (other ids), square 4 missed, one false object.
    pred = _boxes(
        (40, 40),
        {
            11: SQUARES[1],
            12: SQUARES[2],
            13: SQUARES[3],
            14: (slice(32, 40), slice(32, 40)),
        },
    )
    assert average_precision_dsb(true, pred, iou_threshold=0.5) == 3 / 5
    assert precision(true, pred, iou_threshold=0.5) == 3 / 4
    assert recall(true, pred, iou_threshold=0.5) == 3 / 4
    assert f1(true, pred, iou_threshold=0.5) == 3 / 4
    m = match_instances(true, pred, iou_threshold=0.5)
    assert isinstance(m, Matching)
    assert (m.tp, m.fp, m.fn, m.n_true, m.n_pred) == (3, 1, 1, 4, 4)
    assert m.true_ids.tolist() == [1, 2, 3]
    assert m.pred_ids.tolist() == [11, 12, 13]
    assert m.ious.tolist() == [1.0, 1.0, 1.0]
    assert m.iou_threshold == 0.5
    assert mean_average_precision_dsb(true, pred) == pytest.approx(3 / 5, abs=1e-15)
    # Best Dice: GT -> pred (1 + 1 + 1 + 0) / 4, pred -> GT the same.
    assert symmetric_best_dice(true, pred) == 3 / 4


def test_shifted_object_matched_only_below_its_iou():
    true = _boxes((10, 20), {1: (slice(0, 10), slice(0, 10))})
    pred = _boxes((10, 20), {2: (slice(0, 10), slice(5, 15))})
    m = match_instances(true, pred, iou_threshold=0.3)
    assert (m.tp, m.fp, m.fn) == (1, 0, 0)
    assert m.ious.tolist() == [1 / 3]
    assert average_precision_dsb(true, pred, iou_threshold=0.3) == 1.0
    m = match_instances(true, pred, iou_threshold=0.5)
    assert (m.tp, m.fp, m.fn) == (0, 1, 1)
    assert m.true_ids.size == 0 and m.pred_ids.size == 0 and m.ious.size == 0
    assert average_precision_dsb(true, pred, iou_threshold=0.5) == 0.0
    assert precision(true, pred, iou_threshold=0.5) == 0.0
    # Dice = 2 * 50 / (100 + 100) = 1/2 both ways.
    assert symmetric_best_dice(true, pred) == 0.5


def test_iou_exactly_at_threshold_is_matched():
    # GT 10x6 inside a 10x10 prediction -> IoU = 60 / 100 = 0.6 exactly.
    true = _boxes((10, 10), {1: (slice(0, 10), slice(0, 6))})
    pred = _boxes((10, 10), {1: (slice(0, 10), slice(0, 10))})
    assert average_precision_dsb(true, pred, iou_threshold=0.6) == 1.0
    assert average_precision_dsb(true, pred, iou_threshold=0.61) == 0.0
    # DSB thresholds 0.50, 0.55, 0.60 pass; 0.65 ... 0.95 (7 of them) fail.
    assert mean_average_precision_dsb(true, pred) == pytest.approx(3 / 10, abs=1e-15)


def test_merge_two_objects_predicted_as_one():
    # Two touching 10x10 GT squares, one 10x20 prediction: IoU 100/200 = 0.5 each.
    true = _boxes((10, 20), {1: (slice(0, 10), slice(0, 10)), 2: (slice(0, 10), slice(10, 20))})
    pred = _boxes((10, 20), {7: (slice(0, 10), slice(0, 20))})
    ious, _, _ = iou_matrix(true, pred)
    assert ious.tolist() == [[0.5], [0.5]]
    # At 0.5 one GT object is matched: TP 1, FP 0, FN 1.
    assert average_precision_dsb(true, pred, iou_threshold=0.5) == 1 / 2
    assert precision(true, pred, iou_threshold=0.5) == 1.0
    assert recall(true, pred, iou_threshold=0.5) == 1 / 2
    assert f1(true, pred, iou_threshold=0.5) == 2 / 3
    # Above 0.5 nothing matches: TP 0, FP 1, FN 2.
    assert average_precision_dsb(true, pred, iou_threshold=0.55) == 0.0
    # Dice = 2 * 100 / 300 = 2/3 in both directions.
    assert symmetric_best_dice(true, pred) == pytest.approx(2 / 3, abs=1e-15)
    # Only the 0.50 threshold out of ten passes.
    assert mean_average_precision_dsb(true, pred) == pytest.approx(1 / 20, abs=1e-15)


def test_merge_with_gap():
    # GT squares at columns 0-9 and 12-21, prediction covers columns 0-21 (area 220).
    true = _boxes((10, 22), {1: (slice(0, 10), slice(0, 10)), 2: (slice(0, 10), slice(12, 22))})
    pred = _boxes((10, 22), {1: (slice(0, 10), slice(0, 22))})
    # IoU = 100 / 220 = 5/11 < 0.5.
    assert average_precision_dsb(true, pred, iou_threshold=0.5) == 0.0
    assert average_precision_dsb(true, pred, iou_threshold=0.4) == 1 / 2
    # Dice = 200 / 320 = 0.625 for every object in both directions.
    assert symmetric_best_dice(true, pred) == pytest.approx(0.625, abs=1e-15)


def test_split_one_object_predicted_as_two():
    # One 10x20 GT object predicted as its two 10x10 halves: IoU 0.5 each.
    true = _boxes((10, 20), {3: (slice(0, 10), slice(0, 20))})
    pred = _boxes((10, 20), {1: (slice(0, 10), slice(0, 10)), 2: (slice(0, 10), slice(10, 20))})
    # TP 1, FP 1, FN 0.
    assert average_precision_dsb(true, pred, iou_threshold=0.5) == 1 / 2
    assert precision(true, pred, iou_threshold=0.5) == 1 / 2
    assert recall(true, pred, iou_threshold=0.5) == 1.0
    assert f1(true, pred, iou_threshold=0.5) == 2 / 3
    # TP 0, FP 2, FN 1.
    assert average_precision_dsb(true, pred, iou_threshold=0.6) == 0.0
    m = match_instances(true, pred, iou_threshold=0.5)
    assert m.tp == 1 and m.ious.tolist() == [0.5]


def test_hungarian_beats_greedy_at_low_threshold():
    # Columns (height 10 everywhere):
    #   pred Y = [0, 4), pred X = [4, 14)
    #   GT   A = [2, 12), GT   B = [12, 20)
    # IoU(A, X) = 8/12 = 2/3, IoU(A, Y) = 2/12 = 1/6, IoU(B, X) = 2/16 = 1/8, IoU(B, Y) = 0.
    # Greedy (best IoU first) takes A-X and then has nothing left for B: 1 match.
    # The optimal matching takes A-Y and B-X: 2 matches.
    true = _boxes((10, 20), {1: (slice(0, 10), slice(2, 12)), 2: (slice(0, 10), slice(12, 20))})
    pred = _boxes((10, 20), {5: (slice(0, 10), slice(0, 4)), 6: (slice(0, 10), slice(4, 14))})
    ious, _, _ = iou_matrix(true, pred)
    assert ious.tolist() == [[1 / 6, 2 / 3], [0.0, 1 / 8]]
    m = match_instances(true, pred, iou_threshold=0.1)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert m.true_ids.tolist() == [1, 2]
    assert m.pred_ids.tolist() == [5, 6]
    assert m.ious.tolist() == [1 / 6, 1 / 8]
    assert average_precision_dsb(true, pred, iou_threshold=0.1) == 1.0
    # At 0.15 B-X (1/8) is no longer allowed; A-X beats A-Y on IoU.
    m = match_instances(true, pred, iou_threshold=0.15)
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    assert m.pred_ids.tolist() == [6]
    assert average_precision_dsb(true, pred, iou_threshold=0.15) == 1 / 3


def test_equal_size_matchings_prefer_higher_total_iou():
    # One GT object overlapping two predictions; either gives one match, the
    # one with the larger IoU must be chosen.
    true = _boxes((10, 20), {1: (slice(0, 10), slice(4, 14))})
    pred = _boxes((10, 20), {1: (slice(0, 10), slice(0, 6)), 2: (slice(0, 10), slice(6, 20))})
    # IoU(A, 1) = 2/14 = 1/7, IoU(A, 2) = 8/16 = 1/2.
    m = match_instances(true, pred, iou_threshold=0.1)
    assert m.pred_ids.tolist() == [2]
    assert m.ious.tolist() == [0.5]


def _brute_force(ious: np.ndarray, t: float) -> tuple[int, float]:
    """Largest number of pairs, then largest total IoU, over all matchings."""
    n_t, n_p = ious.shape
    best = (0, 0.0)
    for k in range(1, min(n_t, n_p) + 1):
        for rows in itertools.combinations(range(n_t), k):
            for cols in itertools.permutations(range(n_p), k):
                vals = [ious[r, c] for r, c in zip(rows, cols, strict=True)]
                if all(v >= t for v in vals):
                    cand = (k, float(sum(vals)))
                    if cand[0] > best[0] or (cand[0] == best[0] and cand[1] > best[1] + 1e-12):
                        best = cand
    return best


@pytest.mark.parametrize("seed", range(8))
def test_matching_is_optimal_on_small_random_cases(seed):
    rng = np.random.default_rng(seed)
    shape = (24, 24)

    def rand_labels() -> np.ndarray:
        img = np.zeros(shape, np.int32)
        for obj_id in rng.permutation(np.arange(1, 6)):
            r, c = rng.integers(0, 18, size=2)
            h, w = rng.integers(3, 10, size=2)
            img[r : r + h, c : c + w] = obj_id
        return img

    true, pred = rand_labels(), rand_labels()
    ious, _, _ = iou_matrix(true, pred)
    for t in (0.05, 0.1, 0.2, 0.3, 0.5):
        m = match_instances(true, pred, iou_threshold=t)
        n, total = _brute_force(ious, t)
        assert m.tp == n
        assert float(m.ious.sum()) == pytest.approx(total, abs=1e-12)
        assert np.all(m.ious >= t)
        assert len(set(m.pred_ids.tolist())) == m.tp


# ---------------------------------------------------------------------------
# Empty images and SBD
# ---------------------------------------------------------------------------


def test_empty_image_conventions():
    empty = np.zeros((40, 40), np.int32)
    full = _boxes((40, 40), SQUARES)
    funcs = (average_precision_dsb, precision, recall, f1)
    for fn in funcs:
        assert fn(empty, empty, iou_threshold=0.5) == 1.0
        assert fn(empty, full, iou_threshold=0.5) == 0.0
        assert fn(full, empty, iou_threshold=0.5) == 0.0
    assert symmetric_best_dice(empty, empty) == 1.0
    assert symmetric_best_dice(empty, full) == 0.0
    assert symmetric_best_dice(full, empty) == 0.0
    assert mean_average_precision_dsb(empty, empty) == 1.0
    assert mean_average_precision_dsb(full, empty) == 0.0
    m = match_instances(full, empty)
    assert (m.tp, m.fp, m.fn, m.n_true, m.n_pred) == (0, 0, 4, 4, 0)
    m = match_instances(empty, full)
    assert (m.tp, m.fp, m.fn, m.n_true, m.n_pred) == (0, 4, 0, 0, 4)
    row = evaluate_pair(empty, empty)
    assert all(v == 1.0 for k, v in row.items() if k not in ("n_true", "n_pred"))
    assert row["n_true"] == 0.0 and row["n_pred"] == 0.0


def test_symmetric_best_dice_hand_example():
    # GT: one 10x10 square (A). Prediction: A shifted by 5 columns (B) and an
    # extra 10x10 square (C) far away.
    # Dice(A, B) = 2 * 50 / 200 = 1/2.
    # GT -> pred: mean([1/2]) = 1/2; pred -> GT: mean([1/2, 0]) = 1/4. SBD = 1/4.
    true = _boxes((10, 40), {1: (slice(0, 10), slice(0, 10))})
    pred = _boxes((10, 40), {1: (slice(0, 10), slice(5, 15)), 2: (slice(0, 10), slice(30, 40))})
    assert symmetric_best_dice(true, pred) == 1 / 4
    assert symmetric_best_dice(pred, true) == 1 / 4


def test_symmetric_best_dice_uses_best_partner():
    # GT A = 10x10; predictions P1 = A's left 10x6 and P2 = A's right 10x4.
    # Dice(A, P1) = 120 / 160 = 3/4, Dice(A, P2) = 80 / 140 = 4/7.
    # GT -> pred: 3/4; pred -> GT: (3/4 + 4/7) / 2 = 37/56. SBD = 37/56.
    true = _boxes((10, 10), {1: (slice(0, 10), slice(0, 10))})
    pred = _boxes((10, 10), {1: (slice(0, 10), slice(0, 6)), 2: (slice(0, 10), slice(6, 10))})
    assert symmetric_best_dice(true, pred) == pytest.approx(37 / 56, abs=1e-15)


# ---------------------------------------------------------------------------
# evaluate_pair and summarise
# ---------------------------------------------------------------------------


def test_evaluate_pair_keys_and_values():
    true = _boxes((40, 40), SQUARES)
    pred = _boxes((40, 40), {11: SQUARES[1], 12: SQUARES[2], 13: (slice(20, 30), slice(0, 5))})
    row = evaluate_pair(true, pred)
    expected_keys = {"map@0.50:0.95", "sbd", "f1_challenge", "n_true", "n_pred"}
    for t in ("0.50", "0.60", "0.70", "0.80", "0.90"):
        expected_keys |= {f"ap@{t}", f"precision@{t}", f"recall@{t}", f"f1@{t}"}
    assert set(row) == expected_keys
    assert all(isinstance(v, float) for v in row.values())
    # Square 3 predicted as its left half (IoU 1/2), square 4 missed.
    assert row["ap@0.50"] == 3 / 4  # TP 3, FP 0, FN 1
    assert row["precision@0.50"] == 1.0
    assert row["recall@0.50"] == 3 / 4
    assert row["f1@0.50"] == 6 / 7
    assert row["ap@0.60"] == 2 / 5  # TP 2, FP 1, FN 2
    assert row["precision@0.90"] == 2 / 3
    assert row["recall@0.90"] == 1 / 2
    assert row["f1@0.90"] == 4 / 7
    # 0.50 gives 3/4, the nine others 2/5.
    assert row["map@0.50:0.95"] == pytest.approx((3 / 4 + 9 * 2 / 5) / 10, abs=1e-15)
    # Dice(square 3, half) = 100 / 150 = 2/3.
    # GT -> pred: (1 + 1 + 2/3 + 0) / 4 = 2/3; pred -> GT: (1 + 1 + 2/3) / 3 = 8/9.
    assert row["sbd"] == pytest.approx(2 / 3, abs=1e-15)
    assert row["n_true"] == 4.0 and row["n_pred"] == 3.0
    # Same numbers as the single-metric functions.
    assert row["ap@0.70"] == average_precision_dsb(true, pred, iou_threshold=0.7)
    assert row["map@0.50:0.95"] == mean_average_precision_dsb(true, pred)
    assert row["sbd"] == symmetric_best_dice(true, pred)


def test_evaluate_pair_custom_thresholds():
    true = _boxes((10, 20), {1: (slice(0, 10), slice(0, 10))})
    pred = _boxes((10, 20), {2: (slice(0, 10), slice(5, 15))})
    row = evaluate_pair(true, pred, thresholds=[0.3, 0.5])
    assert row["ap@0.30"] == 1.0
    assert row["ap@0.50"] == 0.0
    assert "ap@0.60" not in row
    with pytest.raises(ValueError, match="two decimals"):
        evaluate_pair(true, pred, thresholds=(0.5, 0.501))
    with pytest.raises(ValueError, match="non-empty"):
        evaluate_pair(true, pred, thresholds=())


def test_mean_average_precision_custom_thresholds():
    true = _boxes((10, 20), {1: (slice(0, 10), slice(0, 10))})
    pred = _boxes((10, 20), {2: (slice(0, 10), slice(5, 15))})
    assert mean_average_precision_dsb(true, pred, thresholds=[0.2, 0.3, 0.4, 0.5]) == 1 / 2
    assert mean_average_precision_dsb(true, pred, np.array([0.25])) == 1.0
    assert DSB_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_summarise_means_scores_and_sums_counts():
    rows = [
        {"ap@0.50": 1.0, "sbd": 0.5, "n_true": 4.0, "n_pred": 3.0},
        {"ap@0.50": 0.5, "sbd": 0.25, "n_true": 2.0, "n_pred": 5.0},
    ]
    out = summarise(rows)
    assert out == {"ap@0.50": 0.75, "sbd": 0.375, "n_true": 6.0, "n_pred": 8.0, "n_images": 2.0}


def test_summarise_of_evaluate_pair_rows():
    true = _boxes((40, 40), SQUARES)
    pred = _boxes((40, 40), {11: SQUARES[1], 12: SQUARES[2], 13: SQUARES[3]})
    rows = [evaluate_pair(true, true), evaluate_pair(true, pred)]
    out = summarise(rows)
    assert out["ap@0.50"] == (1.0 + 3 / 4) / 2
    assert out["n_true"] == 8.0 and out["n_pred"] == 7.0
    assert set(out) == set(rows[0]) | {"n_images"}


def test_summarise_rejects_bad_rows():
    with pytest.raises(ValueError, match="at least one row"):
        summarise([])
    with pytest.raises(ValueError, match="same keys"):
        summarise([{"a": 1.0}, {"b": 1.0}])


# ---------------------------------------------------------------------------
# challenge F1 (NeurIPS 2022 cell segmentation)
# ---------------------------------------------------------------------------


def test_remove_border_objects_drops_cells_within_the_rim():
    from napari_instseg.core.metrics import remove_border_objects

    lab = np.zeros((12, 12), np.uint16)
    lab[0:3, 4:7] = 1  # touches the top edge
    lab[2:5, 7:10] = 2  # starts on row 2, just inside a 2-pixel rim
    lab[1:4, 1:4] = 3  # row 1 and column 1 are rim
    lab[5:8, 5:8] = 4  # interior
    lab[9:12, 9:12] = 5  # bottom-right corner
    out = remove_border_objects(lab, 2)
    assert set(np.unique(out)) == {0, 2, 4} and out.dtype == lab.dtype
    assert set(np.unique(remove_border_objects(lab, 0))) == {0, 1, 2, 3, 4, 5}
    assert set(np.unique(remove_border_objects(lab, 3))) == {0, 4}
    assert not remove_border_objects(np.ones((3, 3), int), 2).any()


def test_f1_challenge_ignores_border_cells_and_matches_at_half_iou():
    from napari_instseg.core.metrics import f1_challenge

    truth = np.zeros((20, 20), np.uint16)
    truth[0:4, 0:4] = 1  # border cell: not scored
    truth[5:9, 5:9] = 2
    truth[10:14, 10:14] = 3
    pred = np.zeros_like(truth)
    pred[5:9, 5:9] = 7  # exact
    pred[10:14, 10:12] = 8  # IoU 0.5 exactly: a match
    pred[15:17, 3:6] = 9  # a false positive
    # TP 2, FP 1, FN 0 -> F1 = 4 / 5; the border cell, found or missed, changes nothing
    assert f1_challenge(truth, pred) == pytest.approx(0.8)
    pred[0:4, 0:4] = 10
    assert f1_challenge(truth, pred) == pytest.approx(0.8)
    pred[10:14, 10:12] = 0
    pred[10:14, 10:11] = 8  # IoU 0.25: a miss and a false positive
    assert f1_challenge(truth, pred) == pytest.approx(2 / 5)
    assert f1_challenge(np.zeros((5, 5), int), np.zeros((5, 5), int)) == 1.0
    assert "f1_challenge" in evaluate_pair(truth, pred)


def test_f1_challenge_scores_huge_images_tile_by_tile():
    from napari_instseg.core.metrics import f1_challenge

    truth = np.zeros((40, 40), np.uint16)
    truth[8:12, 8:12] = 1  # inside the first 20-px tile
    truth[18:22, 28:32] = 2  # cut by the tile border at y = 20: removed in both tiles
    pred = truth.copy()
    pred[18:22, 28:32] = 0  # missing it costs nothing when tiled
    assert f1_challenge(truth, pred, tile=20, max_pixels=100) == 1.0
    assert f1_challenge(truth, pred) == pytest.approx(2 / 3)  # whole image: a miss
    # padding: a 30x30 image becomes two tiles per axis
    assert f1_challenge(truth[:30, :30], pred[:30, :30], tile=20, max_pixels=100) == 1.0
