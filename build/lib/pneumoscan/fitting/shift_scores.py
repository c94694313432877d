"""Scoring a model on the shift suite (:mod:`pneumoscan.fitting.shifts`) at its frozen threshold.

The worst case over shifts, not the clean score, is what chooses models, epochs and the
operating threshold: a model whose specificity falls under tighter framing or burned-in
text will fall on films from another machine too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pneumoscan.decision import is_positive
from pneumoscan.fitting.shifts import SHIFTS, Shift, shifted_sets

#: Calibrated pneumonia probabilities ``(N,)`` for source-size uint8 images ``(N, H, W)``.
ProbabilityFunction = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ShiftScore:
    """A model's figures on the validation images under one shift."""

    name: str
    group: str
    auc: float
    sensitivity: float
    specificity: float


@dataclass(frozen=True)
class SuiteSummary:
    """Worst case and mean over the shifts (the clean row excluded)."""

    worst_auc: float
    worst_auc_shift: str
    worst_specificity: float
    worst_specificity_shift: str
    worst_sensitivity: float
    worst_sensitivity_shift: str
    mean_auc: float
    mean_sensitivity: float
    mean_specificity: float


def shifted_probabilities(probability: ProbabilityFunction, images: np.ndarray,
                          shifts: Sequence[Shift] = SHIFTS, *, seed: int = 0,
                          ) -> dict[str, np.ndarray]:
    """The model's probabilities on ``images`` under each shift, by shift name."""
    return {shift.name: probability(shifted)
            for shift, shifted in shifted_sets(images, shifts, seed=seed)}


def score_shift(shift: Shift, labels: np.ndarray, probabilities: np.ndarray,
                threshold: float) -> ShiftScore:
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    called = is_positive(np.asarray(probabilities), threshold)
    return ShiftScore(shift.name, shift.group, float(roc_auc_score(labels, probabilities)),
                      float(called[labels].mean()), float((~called[~labels]).mean()))


def score_suite(labels: np.ndarray, probabilities: dict[str, np.ndarray], threshold: float,
                shifts: Sequence[Shift] = SHIFTS) -> list[ShiftScore]:
    """One :class:`ShiftScore` per shift, at the frozen ``threshold``."""
    return [score_shift(shift, labels, probabilities[shift.name], threshold)
            for shift in shifts if shift.name in probabilities]


def summarise(scores: Sequence[ShiftScore]) -> SuiteSummary:
    """Worst case and mean over the shifted rows (the ``none`` row is the clean score)."""
    shifted = [s for s in scores if s.name != "none"]
    if not shifted:
        raise ValueError("no shifted rows to summarise")
    worst_auc = min(shifted, key=lambda s: s.auc)
    worst_spec = min(shifted, key=lambda s: s.specificity)
    worst_sens = min(shifted, key=lambda s: s.sensitivity)
    return SuiteSummary(
        worst_auc.auc, worst_auc.name, worst_spec.specificity, worst_spec.name,
        worst_sens.sensitivity, worst_sens.name,
        float(np.mean([s.auc for s in shifted])),
        float(np.mean([s.sensitivity for s in shifted])),
        float(np.mean([s.specificity for s in shifted])))


def pooled(labels: np.ndarray, probabilities: dict[str, np.ndarray],
           ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of every shifted copy (clean included) stacked together:
    what the threshold rule sees, so that the threshold suits shifted films too."""
    names = sorted(probabilities)
    return (np.concatenate([np.asarray(labels)] * len(names)),
            np.concatenate([probabilities[name] for name in names]))


def fit_operating_point(labels: np.ndarray, logits: dict[str, np.ndarray], *,
                        min_sensitivity: float, plateau: float) -> tuple[float, float, float]:
    """Calibration (on the clean logits) and threshold (on every shifted copy pooled).

    The calibration (:func:`pneumoscan.calibration.fit_platt`) is fitted where it is judged,
    on clean images. The threshold follows the training rule
    (:func:`pneumoscan.calibration.choose_threshold`) on the clean and shifted validation
    images together: shifted normals score higher, so the threshold that suits them sits
    higher than the clean images alone would put it.

    Returns:
        ``(temperature, bias, threshold)``.
    """
    from pneumoscan.calibration import apply_temperature, choose_threshold, fit_platt

    if "none" not in logits:
        raise ValueError("the clean row ('none') is needed to fit the calibration")
    temperature, bias = fit_platt(logits["none"], labels)
    probabilities = {name: apply_temperature(v, temperature, bias)
                     for name, v in logits.items()}
    threshold = choose_threshold(*pooled(labels, probabilities),
                                 min_sensitivity=min_sensitivity, plateau=plateau)
    return temperature, bias, threshold
