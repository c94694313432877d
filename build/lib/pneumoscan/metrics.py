"""Classification metrics for a binary decision at a fixed threshold, with intervals.

Positive class = PNEUMONIA. Pure functions over numpy arrays: ``labels`` are 0/1,
``probabilities`` are calibrated P(pneumonia), ``threshold`` was fixed beforehand.
ROC AUC, the confusion counts and the Brier score come from scikit-learn, Wilson intervals
from scipy; the bootstrap and ECE are a few lines each (neither library has them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import binomtest, rankdata
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score

from pneumoscan.decision import is_positive


def confusion_counts(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """True/false positives/negatives of 0/1 predictions (scikit-learn's confusion matrix)."""
    matrix = confusion_matrix(np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool),
                              labels=[False, True])
    tn, fp, fn, tp = (int(count) for count in matrix.ravel())
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def wilson_interval(successes: int, total: int) -> list[float]:
    """95 % Wilson score interval of a proportion (well-behaved near 0 and 1); NaNs when
    ``total`` is 0. scipy's ``binomtest(...).proportion_ci(method="wilson")``."""
    if total == 0:
        return [math.nan, math.nan]
    interval = binomtest(successes, total).proportion_ci(confidence_level=0.95,
                                                         method="wilson")
    return [float(interval.low), float(interval.high)]


def _rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic (ties count 1/2), equal to scikit-learn's
    ``roc_auc_score`` but ~100x faster: its input checks dominate a 1,000-fold bootstrap."""
    positive = labels.astype(bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_auc_interval(labels: np.ndarray, probabilities: np.ndarray,
                           n_boot: int = 1000, seed: int = 0) -> list[float]:
    """95 % percentile-bootstrap interval of ROC AUC (resampling images)."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities)
    rng = np.random.default_rng(seed)
    n = len(labels)
    aucs: list[float] = []
    for _ in range(n_boot):
        index = rng.integers(0, n, n)
        sample = labels[index]
        if sample.min() == sample.max():
            continue  # one class only: AUC undefined for this resample
        aucs.append(_rank_auc(sample, probabilities[index]))
    if not aucs:
        return [math.nan, math.nan]
    return [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))]


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray,
                               n_bins: int = 10) -> float:
    """ECE over equal-width probability bins: sum of |accuracy - confidence| weighted."""
    labels = np.asarray(labels, dtype=float)
    probabilities = np.asarray(probabilities, dtype=float)
    bins = np.minimum((probabilities * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(labels[mask].mean() - probabilities[mask].mean())
    return float(total)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float,
                    *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All the figures of ``metrics.json`` for predictions ``probabilities >= threshold``.

    Returns a JSON-ready dict: ``n, n_positive, n_negative, threshold, auc, auc_ci95,
    accuracy, sensitivity, sensitivity_ci95, specificity, specificity_ci95, precision, f1,
    tp, fp, tn, fn, brier, ece``. Undefined values (e.g. AUC with one class) are NaN.
    """
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=float)
    if labels.shape != probabilities.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and probabilities {probabilities.shape} "
                         "must be 1-D and of the same length")
    predicted = is_positive(probabilities, threshold)
    counts = confusion_counts(labels, predicted)
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    both_classes = 0 < labels.sum() < len(labels)
    sensitivity = _ratio(tp, tp + fn)
    precision = _ratio(tp, tp + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "n": len(labels),
        "n_positive": int(labels.sum()),
        "n_negative": int(len(labels) - labels.sum()),
        "threshold": float(threshold),
        "auc": float(roc_auc_score(labels, probabilities)) if both_classes else math.nan,
        "auc_ci95": bootstrap_auc_interval(labels, probabilities, n_boot, seed)
        if both_classes else [math.nan, math.nan],
        "accuracy": _ratio(tp + tn, len(labels)),
        "sensitivity": sensitivity,
        "sensitivity_ci95": wilson_interval(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "specificity_ci95": wilson_interval(tn, tn + fp),
        "precision": precision,
        "f1": f1,
        **counts,
        "brier": float(brier_score_loss(labels, probabilities)) if len(labels) else math.nan,
        "ece": expected_calibration_error(labels, probabilities),
    }
