"""The evaluation plots, each a function of (labels, probabilities) writing one PNG.

Sized to be read at their natural size in ``report.html`` (about 500 px wide), with type
large enough for that: 12 pt labels at 100 dpi.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
)

from pneumoscan.decision import is_positive

#: Saved resolution; with the figure sizes below, plots are 450-550 px wide.
DPI = 100
#: Type sizes of every evaluation plot (matplotlib's defaults are for 6-inch figures in print).
LEGIBLE: dict[Any, Any] = {"font.size": 12, "axes.titlesize": 14, "axes.labelsize": 12,
           "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 11}

P = ParamSpec("P")


def _legible(plot: Callable[P, Path]) -> Callable[P, Path]:
    """Draw ``plot`` with :data:`LEGIBLE` type (text takes its size when it is created)."""
    @functools.wraps(plot)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Path:
        with plt.rc_context(LEGIBLE):
            return plot(*args, **kwargs)
    return wrapper


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


@_legible
def plot_roc(labels: np.ndarray, probabilities: np.ndarray, threshold: float,
             path: Path) -> Path:
    """ROC curve with the operating point at ``threshold`` marked."""
    fig, ax = plt.subplots(figsize=(5, 5))
    RocCurveDisplay.from_predictions(labels, probabilities, ax=ax, name="pneumoscan")
    predicted = is_positive(probabilities, threshold)
    tpr = predicted[labels == 1].mean()
    fpr = predicted[labels == 0].mean()
    ax.plot([fpr], [tpr], "o", color="crimson", markersize=9,
            label=f"operating point (t = {threshold:.2f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity (false-positive rate)",
           ylabel="sensitivity (true-positive rate)", title="ROC: pneumonia vs normal")
    ax.legend(loc="lower right")
    return _save(fig, path)


@_legible
def plot_precision_recall(labels: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    PrecisionRecallDisplay.from_predictions(labels, probabilities, ax=ax, name="pneumoscan")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (positive predictive value)",
           title="Precision-recall")
    ax.legend(loc="lower left")
    return _save(fig, path)


@_legible
def plot_confusion(labels: np.ndarray, predicted: np.ndarray, class_names: list[str],
                   path: Path, title: str = "Confusion matrix") -> Path:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ConfusionMatrixDisplay.from_predictions(labels, predicted, display_labels=class_names,
                                            ax=ax, cmap="Blues", colorbar=False,
                                            labels=list(range(len(class_names))),
                                            text_kw={"fontsize": 16})
    ax.set(xlabel="predicted label", ylabel="true label", title=title)
    return _save(fig, path)


@_legible
def plot_reliability(labels: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    observed, predicted = calibration_curve(labels, probabilities, n_bins=10,
                                            strategy="uniform")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(predicted, observed, "o-", label="pneumoscan")
    ax.set(xlabel="predicted P(pneumonia)", ylabel="observed share with pneumonia",
           title="Reliability diagram", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return _save(fig, path)


@_legible
def plot_score_histogram(labels: np.ndarray, probabilities: np.ndarray, threshold: float,
                         class_names: list[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = np.linspace(0, 1, 26).tolist()
    for value, colour in ((0, "tab:blue"), (1, "tab:red")):
        ax.hist(probabilities[labels == value], bins=bins, alpha=0.6, color=colour,
                label=f"true {class_names[value]}")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
    ax.set(xlabel="P(pneumonia)", ylabel="images", title="Scores per true class")
    ax.legend()
    return _save(fig, path)
