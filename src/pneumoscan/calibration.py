"""Probability calibration and the operating-threshold rule, both fitted on validation.

Temperature scaling (Guo et al., 2017) divides a logit by one scalar T fitted by maximum
likelihood; it changes calibration, not ranking. scikit-learn offers Platt and isotonic
calibration but not a single temperature on given logits; the fit is one call of scipy's
``minimize_scalar``. The pneumonia logit gets Platt scaling, a temperature and a bias
(:func:`fit_platt`, scikit-learn's logistic regression on the one logit): a model trained
with strong augmentation and a class-weighted loss is not only too sharp or too soft but
also offset (the shipped model of November 2026 needed +2.9 on the logit; temperature
alone left its validation ECE at 0.059, Platt scaling brought it to 0.008).

The threshold rule, chosen to generalise rather than to win on validation:
- the loss is class-weighted, so the model's probabilities are those of a balanced (50 %)
  prior and the decision does not lean on the training prevalence (74 %), which differs
  from the test set's (62.5 %) and from any clinic's;
- among thresholds on a 0.01 grid, keep those whose sensitivity is at least
  ``min_sensitivity`` and whose Youden J (sensitivity + specificity - 1) is within
  ``plateau`` of the best; the threshold is the **median** of that plateau, so it sits in
  the middle of the good region, not on its edge where a shifted test set falls off.

Training fits both at once (:func:`fit_operating_point`): the calibration on the clean
validation logits, the threshold on the clean and shifted copies pooled (or, with the
worst-case rule, :func:`fit_worst_case_operating_point`).

A site's own films (``pneumoscan calibrate``) refit the Platt scaling on the calibrated logit
(:func:`compose_platt`) and set the threshold by a lower confidence bound of the
sensitivity (:func:`choose_site_threshold`): at a site's tens of films the plateau rule's
raw rates are too noisy to stand on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The fitted temperature lies in [1 / MAX_TEMPERATURE, MAX_TEMPERATURE].
MAX_TEMPERATURE = 20.0


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fit T > 0 minimising the binary NLL of ``sigmoid(logits / T)``.

    A 1-D problem: scipy's bounded ``minimize_scalar`` on log T in [log 1/20, log 20].
    """
    from scipy.optimize import minimize_scalar  # fitting only; not on the prediction path

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        # log(1 + exp(z)) - y z  is the binary cross-entropy, stable through logaddexp
        return float(np.mean(np.logaddexp(0.0, z) - labels * z))

    bounds = (math.log(1 / MAX_TEMPERATURE), math.log(MAX_TEMPERATURE))
    result = minimize_scalar(nll, bounds=bounds, method="bounded",
                             options={"xatol": 1e-6})
    return float(math.exp(result.x))


def fit_platt(logits: np.ndarray, labels: np.ndarray, *,
              balanced: bool = False) -> tuple[float, float]:
    """Fit ``(temperature, bias)`` so that ``sigmoid(logits / temperature + bias)`` has the
    least binary NLL: Platt scaling, scikit-learn's (practically unregularised) logistic
    regression on the logit. The temperature is kept in [1/20, 20].

    With ``balanced`` each class weighs half (scikit-learn's ``class_weight="balanced"``):
    the probabilities are those of a 50 % prevalence, not of the fitting set's, so they do
    not lean on this data's 74 % (a test set's 62.5 %, a clinic's anything).
    """
    from sklearn.linear_model import LogisticRegression  # fitting only

    logits = np.asarray(logits, dtype=np.float64).reshape(-1, 1)
    fitted = LogisticRegression(C=1e6, max_iter=1000,
                                class_weight="balanced" if balanced else None,
                                ).fit(logits, np.asarray(labels))
    slope = float(np.clip(fitted.coef_[0, 0], 1 / MAX_TEMPERATURE, MAX_TEMPERATURE))
    return 1.0 / slope, float(fitted.intercept_[0])


def apply_temperature(logits: np.ndarray, temperature: float | np.ndarray,
                      bias: float | np.ndarray = 0.0) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logits / temperature + bias)`` (``temperature``
    and ``bias`` may be one per column of ``logits``)."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(logits, dtype=np.float64) / temperature + bias)))


def choose_threshold(labels: np.ndarray, probabilities: np.ndarray, *,
                     min_sensitivity: float = 0.95, plateau: float = 0.02) -> float:
    """The median of the near-best-Youden plateau among high-sensitivity thresholds."""
    labels = np.asarray(labels).astype(bool)
    probabilities = np.asarray(probabilities, dtype=float)
    if labels.all() or not labels.any():
        raise ValueError("choosing a threshold needs both classes in the validation set")
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    sensitivity = np.array([(probabilities[labels] >= t).mean() for t in grid])
    specificity = np.array([(probabilities[~labels] < t).mean() for t in grid])
    youden = sensitivity + specificity - 1
    allowed = sensitivity >= min_sensitivity
    if not allowed.any():
        allowed = sensitivity >= sensitivity.max() - 1e-9
    best = youden[allowed].max()
    candidates = grid[allowed & (youden >= best - plateau)]
    return float(np.median(candidates))


def threshold_for_sensitivity(labels: np.ndarray, probabilities: np.ndarray,
                              min_sensitivity: float) -> float:
    """The highest threshold on a 0.005 grid that still calls at least ``min_sensitivity``
    of the positives positive: the most specific operating point at that sensitivity."""
    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        raise ValueError("choosing a threshold needs positives in the validation set")
    grid = np.round(np.arange(0.005, 1.0, 0.005), 3)
    positives = np.asarray(probabilities, dtype=float)[labels]
    sensitivity = np.array([(positives >= t).mean() for t in grid])
    allowed = grid[sensitivity >= min_sensitivity]
    return float(allowed.max()) if allowed.size else float(grid[0])


def worst_case_threshold(sets: dict[str, tuple[np.ndarray, np.ndarray]],
                         min_sensitivity: float) -> tuple[float, str]:
    """The threshold that keeps ``min_sensitivity`` on every one of ``sets`` (name →
    ``(labels, probabilities)``): the lowest of their :func:`threshold_for_sensitivity`.
    Returns it with the name of the set that decided it.

    A threshold chosen on one validation set sits where that set's positives end; on
    another period or another framing they end lower. Taking the worst case over the
    shifted, out-of-protocol and edge-of-time sets chooses for the period not yet seen.
    """
    if not sets:
        raise ValueError("no validation sets to choose a threshold on")
    chosen = {name: threshold_for_sensitivity(labels, probabilities, min_sensitivity)
              for name, (labels, probabilities) in sets.items()}
    name = min(chosen, key=lambda n: chosen[n])
    return chosen[name], name
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

    ``logits``: the validation logits by shift name (:mod:`pneumoscan.fitting.shifts`),
    ``"none"`` the clean ones. The calibration (:func:`fit_platt`) is fitted where it is
    judged, on clean images. The threshold follows the training rule
    (:func:`choose_threshold`) on the clean and shifted validation images together:
    shifted normals score higher, so the threshold that suits them sits higher than the
    clean images alone would put it.

    Returns:
        ``(temperature, bias, threshold)``.
    """
    if "none" not in logits:
        raise ValueError("the clean row ('none') is needed to fit the calibration")
    temperature, bias = fit_platt(logits["none"], labels)
    probabilities = {name: apply_temperature(v, temperature, bias)
                     for name, v in logits.items()}
    threshold = choose_threshold(*pooled(labels, probabilities),
                                 min_sensitivity=min_sensitivity, plateau=plateau)
    return temperature, bias, threshold


def fit_worst_case_operating_point(
        labels: np.ndarray, shifted_logits: dict[str, np.ndarray],
        held_out: dict[str, tuple[np.ndarray, np.ndarray]], *, min_sensitivity: float,
        ) -> tuple[float, float, float, str]:
    """Calibration and threshold for a period not yet seen (config ``threshold_rule =
    "worst-case"``).

    - Calibration: prevalence-neutral Platt scaling (:func:`fit_platt`, ``balanced``) on
      the clean logits of every held-out set pooled (``held_out``: name → ``(labels,
      logits)``; the patient-level validation, out-of-protocol and edge-of-time sets).
    - Threshold: :func:`worst_case_threshold` over the validation images under the shift
      suite pooled (``labels``, ``shifted_logits`` by shift name, clean included) and each
      held-out set other than the validation on its own: the most specific threshold that
      keeps ``min_sensitivity`` on all of them.

    Returns:
        ``(temperature, bias, threshold, name of the set that decided the threshold)``.
    """
    temperature, bias = fit_platt(np.concatenate([z for _, z in held_out.values()]),
                                  np.concatenate([y for y, _ in held_out.values()]),
                                  balanced=True)
    shifted = {name: apply_temperature(v, temperature, bias)
               for name, v in shifted_logits.items()}
    sets = {"validation under the shift suite": pooled(labels, shifted)} | {
        name: (y, apply_temperature(z, temperature, bias))
        for name, (y, z) in held_out.items() if name != "validation"}
    threshold, decided = worst_case_threshold(sets, min_sensitivity)
    return temperature, bias, threshold, decided
@dataclass(frozen=True)
class SiteThreshold:
    """A threshold chosen for an operating sensitivity, with what the films can vouch for."""

    threshold: float
    caught: int  # positive films at or above it
    n_positive: int
    lower_bound: float  # one-sided lower confidence bound of the sensitivity at it
    reached: bool  # whether the bound reaches the requested sensitivity


def sensitivity_lower_bounds(n_positive: int, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bounds of a sensitivity with ``k`` of ``n_positive``
    caught, for ``k = 0 .. n_positive``: the ``1 - confidence`` quantile of
    Beta(k, n - k + 1), scipy's ``binomtest(k, n, alternative="greater").proportion_ci``
    in one vectorised call."""
    from scipy.stats import beta  # fitting only

    caught = np.arange(n_positive + 1)
    with np.errstate(invalid="ignore"):
        bounds = beta.ppf(1.0 - confidence, caught, n_positive - caught + 1)
    return np.nan_to_num(bounds, nan=0.0)


def choose_site_threshold(labels: np.ndarray, probabilities: np.ndarray, *,
                          sensitivity: float = 0.95,
                          confidence: float = 0.95) -> SiteThreshold:
    """The highest threshold at which the films show, with ``confidence``, a sensitivity of
    at least ``sensitivity``: the one-sided lower confidence bound, not the raw rate, must
    reach it. With few films the raw rate is noisy (at 25 positive films one miss more
    or less moves it by 0.04), and a threshold set on it falls short half the time.

    The bound needs enough positive films to reach the target at all (at 0.95 with 95 %
    confidence, 59 with none missed); with fewer the threshold catches every positive film
    and ``reached`` is False. The threshold lies midway between the last positive film
    it must catch and the next lower score, so that no fitted film sits on the edge.
    """
    labels = np.asarray(labels).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.all() or not labels.any():
        raise ValueError("choosing a threshold needs films of both classes")
    positives = np.sort(probabilities[labels])[::-1]  # highest first
    bounds = sensitivity_lower_bounds(len(positives), confidence)
    enough = np.flatnonzero(bounds >= sensitivity)
    caught = int(enough[0]) if enough.size else len(positives)
    cut = positives[caught - 1]
    below = probabilities[probabilities < cut]
    threshold = float((cut + below.max()) / 2) if below.size else float(cut)
    caught_now = int((positives >= threshold).sum())  # ties with the cut are caught too
    return SiteThreshold(threshold=threshold, caught=caught_now,
                         n_positive=len(positives),
                         lower_bound=float(bounds[caught_now]), reached=bool(enough.size))


def compose_platt(temperature: float, bias: float, refit_temperature: float,
                  refit_bias: float) -> tuple[float, float]:
    """The one ``(temperature, bias)`` of a Platt refit on already calibrated logits
    ``z = logit / temperature + bias``: ``z / refit_temperature + refit_bias`` is
    ``logit / (temperature * refit_temperature) + bias / refit_temperature + refit_bias``."""
    return temperature * refit_temperature, bias / refit_temperature + refit_bias


def calibrated_logits(probabilities: np.ndarray) -> np.ndarray:
    """The calibrated logit ``log(p / (1 - p))`` of probabilities (kept finite)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0 - 1e-12)
    return np.log(p / (1.0 - p))
