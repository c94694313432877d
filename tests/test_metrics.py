"""Metric values checked against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pneumoscan.metrics import (
    bootstrap_auc_interval,
    compute_metrics,
    confusion_counts,
    expected_calibration_error,
    wilson_interval,
)

# Five pneumonia and five normal images; threshold 0.5.
LABELS = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
PROBS = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.65, 0.2, 0.1, 0.55, 0.05])


def test_confusion_counts_by_hand() -> None:
    # positives >= 0.5: 0.9 0.8 0.7 0.6 -> tp 4, 0.3 -> fn 1
    # negatives >= 0.5: 0.65 0.55 -> fp 2, 0.2 0.1 0.05 -> tn 3
    assert confusion_counts(LABELS, PROBS >= 0.5) == {"tp": 4, "fp": 2, "tn": 3, "fn": 1}
    # one class absent from both: its counts are zeros, not missing
    assert confusion_counts(np.array([1, 1]), np.array([True, True])) == \
        {"tp": 2, "fp": 0, "tn": 0, "fn": 0}


def test_compute_metrics_by_hand() -> None:
    m = compute_metrics(LABELS, PROBS, 0.5, n_boot=200)
    assert (m["n"], m["n_positive"], m["n_negative"]) == (10, 5, 5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (4, 2, 3, 1)
    assert m["threshold"] == 0.5
    assert m["sensitivity"] == pytest.approx(4 / 5)
    assert m["specificity"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(8 / 11)  # 2tp / (2tp + fp + fn)
    assert m["accuracy"] == pytest.approx(7 / 10)
    # pairs (pos, neg) ranked right: 5 + 5 + 5 + 4 (0.6 < 0.65) + 3 (0.3 > 0.2, 0.1, 0.05)
    assert m["auc"] == pytest.approx(22 / 25)
    # squared errors: positives .01 .04 .09 .16 .49, negatives .4225 .04 .01 .3025 .0025
    assert m["brier"] == pytest.approx(1.5675 / 10)
    assert m["ece"] == pytest.approx(0.245)
    assert m["sensitivity_ci95"] == pytest.approx(wilson_interval(4, 5))
    assert m["specificity_ci95"] == pytest.approx(wilson_interval(3, 5))
    low, high = m["auc_ci95"]
    assert low <= m["auc"] <= high


def test_threshold_is_inclusive() -> None:
    m = compute_metrics(np.array([1, 0]), np.array([0.5, 0.49]), 0.5, n_boot=10)
    assert (m["tp"], m["tn"]) == (1, 1)


def test_expected_calibration_error_by_hand() -> None:
    # bins of 0.1: {0.05: y0} .005, {0.1: y0} .01, {0.2: y0} .02, {0.3: y1} .07,
    # {0.55: y0} .055, {0.6: y1, 0.65: y0} |0.5 - 0.625| * 0.2 = .025, {0.7} .03,
    # {0.8} .02, {0.9} .01  -> 0.245
    assert expected_calibration_error(LABELS, PROBS) == pytest.approx(0.245)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    assert expected_calibration_error(np.array([1, 1]), np.array([0.75, 0.75])) == \
        pytest.approx(0.25)
    # p = 1.0 falls in the last bin, not out of range
    assert expected_calibration_error(np.array([1]), np.array([1.0]), n_bins=10) == 0.0


def test_wilson_interval_known_values() -> None:
    # 8 of 10 -> [0.4902, 0.9433] (Wilson 1927; Newcombe 1998, Table I)
    assert wilson_interval(8, 10) == pytest.approx([0.4902, 0.9433], abs=1e-4)
    # 0 of 10 -> [0, 0.2775]: no negative lower bound unlike the Wald interval
    assert wilson_interval(0, 10) == pytest.approx([0.0, 0.2775], abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx([0.7225, 1.0], abs=1e-4)
    # 4 of 5 by the formula: centre (0.8 + z^2/10) / (1 + z^2/5) = 0.66965, half-width
    # z sqrt(0.16/5 + z^2/100) / (1 + z^2/5) = 0.29412, z = 1.959964
    assert wilson_interval(4, 5) == pytest.approx([0.37553, 0.96378], abs=1e-5)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_bootstrap_interval_brackets_the_auc_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(labels * 1.0, 1.0)
    auc = roc_auc_score(labels, scores)
    low, high = bootstrap_auc_interval(labels, scores, n_boot=500, seed=1)
    assert low < auc < high
    assert 0.03 < high - low < 0.2  # about +-2 standard errors at n = 300
    assert bootstrap_auc_interval(labels, scores, n_boot=500, seed=1) == [low, high]


def test_bootstrap_auc_matches_scikit_learn_with_ties() -> None:
    """The fast rank AUC used in the bootstrap equals roc_auc_score, ties included."""
    from pneumoscan.metrics import _rank_auc

    rng = np.random.default_rng(3)
    for n in (4, 25, 200):
        labels = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        scores = np.round(rng.random(n), 1)  # many ties
        assert _rank_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores),
                                                          abs=1e-12)


def test_one_class_gives_nan_auc_not_an_error() -> None:
    m = compute_metrics(np.array([1, 1, 1]), np.array([0.9, 0.2, 0.6]), 0.5, n_boot=10)
    assert math.isnan(m["auc"]) and all(math.isnan(v) for v in m["auc_ci95"])
    assert math.isnan(m["specificity"])
    assert m["sensitivity"] == pytest.approx(2 / 3)


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        compute_metrics(np.array([0, 1]), np.array([0.5]), 0.5)
