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
"""

from __future__ import annotations

import math

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


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Fit ``(temperature, bias)`` so that ``sigmoid(logits / temperature + bias)`` has the
    least binary NLL: Platt scaling, scikit-learn's (practically unregularised) logistic
    regression on the logit. The temperature is kept in [1/20, 20]."""
    from sklearn.linear_model import LogisticRegression  # fitting only

    logits = np.asarray(logits, dtype=np.float64).reshape(-1, 1)
    fitted = LogisticRegression(C=1e6, max_iter=1000).fit(logits, np.asarray(labels))
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
