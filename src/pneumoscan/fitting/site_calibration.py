"""Site calibration: a model's probabilities and threshold refitted on a site's own films.

``pneumoscan calibrate``. A site labels some of its own films (``NORMAL/``, ``PNEUMONIA/``);
the model runs on them, and only the films whose result applies (in scope, of the
population it was validated on) count. On those:

- the Platt scaling is refitted on the model's calibrated logit (two numbers, by
  :func:`pneumoscan.calibration.fit_platt`), folded into the card's temperature and bias;
- the threshold is the highest whose one-sided lower confidence bound of the sensitivity
  reaches the requested one (:func:`pneumoscan.calibration.choose_site_threshold`).

The site model is a folder with its own ``model.json`` (the parent's card with the new
calibration, threshold, version ``PARENT+site-NAME`` and ``site_calibration``) and a record
of the films it was fitted on; its weights are the parent's, by reference and digest
(:func:`pneumoscan.modelfile.referenced_weights`), so the ONNX export, the scope check and
the population check made for them stay valid.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan.calibration import (
    SiteThreshold,
    apply_temperature,
    calibrated_logits,
    choose_site_threshold,
    compose_platt,
    fit_platt,
)
from pneumoscan.dataset import Sample, discover
from pneumoscan.errors import DataLayoutError
from pneumoscan.metrics import compute_metrics
from pneumoscan.modelcard import CARD_NAME, ModelCard, write_card
from pneumoscan.modelfile import (
    DEFAULT_WEIGHTS_REFERENCE,
    ModelLike,
    default_model_path,
    resolve_model,
)
from pneumoscan.predictor import Predictor
from pneumoscan.training_files import (
    load_training_files,
    save_training_files,
    with_calibration_files,
)

logger = logging.getLogger(__name__)

#: Fewest films that count (in scope, right population) for a site calibration. Two
#: numbers are refitted and a threshold chosen; on 40 films the refit's held-out ECE and
#: sensitivity still vary widely between draws (docs/benchmarks.md, "Site calibration").
MIN_FILMS = 50
#: Fewest films of each class: at 20 normal films a specificity's 95 % interval is about
#: +-0.15 wide, and the sensitivity bound needs positive films to stand on.
MIN_PER_CLASS = 20
#: A site name becomes part of the version: letters, digits, '.', '-', at most 32.
SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,31}")


@dataclass(frozen=True)
class SiteFit:
    """A refitted calibration and threshold on a site's films, with their figures."""

    temperature: float  # the card's, composed with the refit
    bias: float
    threshold: SiteThreshold
    figures: dict[str, Any]  # compute_metrics on the fitted films, at the new threshold
    figures_before: dict[str, Any]  # the same films under the parent's calibration


def fit_site(probabilities: np.ndarray, labels: np.ndarray, card: ModelCard, *,
             sensitivity: float = 0.95, confidence: float = 0.95) -> SiteFit:
    """Refit ``card``'s calibration and threshold on films with the parent's calibrated
    ``probabilities`` and their ``labels`` (0 normal, 1 pneumonia)."""
    labels = np.asarray(labels).astype(int)
    logits = calibrated_logits(probabilities)
    refit_temperature, refit_bias = fit_platt(logits, labels)
    temperature, bias = compose_platt(card.temperature, card.bias, refit_temperature,
                                      refit_bias)
    refitted = apply_temperature(logits, refit_temperature, refit_bias)
    threshold = choose_site_threshold(labels, refitted, sensitivity=sensitivity,
                                      confidence=confidence)
    return SiteFit(temperature=temperature, bias=bias, threshold=threshold,
                   figures=compute_metrics(labels, refitted, threshold.threshold),
                   figures_before=compute_metrics(labels, probabilities, card.threshold))


@dataclass(frozen=True)
class CountedFilms:
    """A site's labelled films after the model has seen them."""

    samples: list[Sample]  # the films that count: readable, in scope, right population
    probabilities: np.ndarray  # (N,) the parent's calibrated P(pneumonia) of those
    excluded: dict[str, int]  # films left out, by reason


def count_films(predictor: Predictor, samples: list[Sample], *, batch_size: int = 16,
                progress: Callable[[int], None] | None = None) -> CountedFilms:
    """Run the model on ``samples``; keep those whose result applies."""
    kept: list[Sample] = []
    probabilities: list[float] = []
    excluded = {"unreadable": 0, "out of scope": 0, "other population": 0}
    results = predictor.predict_files([s.path for s in samples], batch_size=batch_size,
                                      progress=progress)
    for sample, result in zip(samples, results, strict=True):
        prediction = result.prediction
        if prediction is None:
            excluded["unreadable"] += 1
        elif not prediction.in_scope:
            excluded["out of scope"] += 1
        elif not prediction.applicable:
            excluded["other population"] += 1
        else:
            kept.append(sample)
            probabilities.append(prediction.probability)
    return CountedFilms(kept, np.array(probabilities, dtype=np.float64), excluded)


def check_enough(labels: np.ndarray, excluded: dict[str, int]) -> None:
    """Refuse fewer than :data:`MIN_FILMS` counted films or :data:`MIN_PER_CLASS` of a class.

    Raises:
        DataLayoutError: too few, saying how many there are and how many are needed.
    """
    n_positive = int(np.sum(labels == 1))
    n_normal = len(labels) - n_positive
    left_out = sum(excluded.values())
    note = (f" ({left_out} more were left out: "
            + ", ".join(f"{n} {why}" for why, n in excluded.items() if n) + ")"
            if left_out else "")
    if len(labels) < MIN_FILMS or min(n_positive, n_normal) < MIN_PER_CLASS:
        raise DataLayoutError(
            f"{len(labels)} films count ({n_normal} normal, {n_positive} pneumonia){note}; a "
            f"site calibration needs at least {MIN_FILMS}, with at least {MIN_PER_CLASS} of "
            "each class: fewer cannot set a threshold or refit probabilities reliably. "
            "Label more of your films (100-200 is better) and run it again")


def site_version(parent: ModelCard, name: str) -> str:
    """``PARENT+site-NAME``: the parent's own version (a site model's parent's, not its
    site suffix) with the site."""
    base = parent.site_calibration.get("parent", {}).get("version") \
        if parent.site_calibration else None
    return f"{base or parent.version or parent.arch}+site-{name}"


def weights_reference(weights: Path, folder: Path) -> str:
    """How a site card names its parent's weights: ``default`` for the shipped model (so a
    reinstall moves nothing), else a path relative to the site folder."""
    if weights.resolve() == default_model_path().resolve():
        return DEFAULT_WEIGHTS_REFERENCE
    return os.path.relpath(weights.resolve(), folder.resolve())


def calibrate_site(model: ModelLike, data: Path | str, out: Path | str, *,
                   name: str, sensitivity: float = 0.95, confidence: float = 0.95,
                   backend: str = "auto", batch_size: int = 16,
                   progress: Callable[[str, int], None] | None = None,
                   ) -> tuple[ModelCard, SiteFit, CountedFilms]:
    """Calibrate ``model`` on a site's labelled films ``data``; write the site model to
    ``out``. ``progress(kind, amount)`` hears ``("start", total)`` and ``("advance", n)``.

    Raises:
        ValueError: a bad site name or sensitivity.
        DataLayoutError: no labelled films, or too few that count (:func:`check_enough`).
    """
    if not SITE_NAME.fullmatch(name):
        raise ValueError(f"site name {name!r}: use 1-32 letters, digits, '.' or '-', "
                         "starting with a letter or digit (it becomes part of the version)")
    if not 0.5 <= sensitivity < 1.0:
        raise ValueError(f"sensitivity must be in [0.5, 1), got {sensitivity}")
    out = Path(out)
    if (out / CARD_NAME).exists():
        raise ValueError(f"{out}: already holds a model; choose another --out folder")
    samples = [s for split in discover(data).splits.values() for s in split]
    if not samples:
        raise DataLayoutError(f"{data}: no labelled films")
    files = resolve_model(model)
    parent = files.card
    predictor = Predictor.load(files, backend=backend)
    if progress is not None:
        progress("start", len(samples))
    counted = count_films(predictor, samples, batch_size=batch_size,
                          progress=None if progress is None
                          else lambda n: progress("advance", n))
    labels = np.array([s.label for s in counted.samples], dtype=int)
    check_enough(labels, counted.excluded)
    fit = fit_site(counted.probabilities, labels, parent, sensitivity=sensitivity,
                   confidence=confidence)
    card = site_card(parent, fit, name=name, labels=labels, excluded=counted.excluded,
                     sensitivity=sensitivity, confidence=confidence,
                     weights=weights_reference(files.weights, out),
                     weights_sha256=files.weights_sha256)
    out.mkdir(parents=True, exist_ok=True)
    write_card(card, out / CARD_NAME)
    save_training_files(with_calibration_files(load_training_files(files),
                                               [s.path for s in counted.samples]), out)
    logger.info("site model %s written to %s", card.version, out)
    return card, fit, counted


def site_card(parent: ModelCard, fit: SiteFit, *, name: str, labels: np.ndarray,
              excluded: dict[str, int], sensitivity: float, confidence: float,
              weights: str, weights_sha256: str) -> ModelCard:
    """The site model's card: the parent's, with the refitted calibration and threshold, the
    site version and ``site_calibration``."""
    n_positive = int(labels.sum())
    figures = {key: fit.figures[key] for key in (
        "n", "auc", "auc_ci95", "accuracy", "sensitivity", "sensitivity_ci95", "specificity",
        "specificity_ci95", "brier", "ece", "tp", "fp", "tn", "fn")}
    before = {key: fit.figures_before[key] for key in (
        "threshold", "sensitivity", "sensitivity_ci95", "specificity", "specificity_ci95",
        "ece")}
    record = {
        "name": name,
        "n_normal": len(labels) - n_positive,
        "n_pneumonia": n_positive,
        "prevalence": n_positive / len(labels),
        "excluded": excluded,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "parent": {"version": site_version(parent, name).rsplit("+site-", 1)[0],
                   "weights_sha256": weights_sha256, "weights": weights},
        "requested_sensitivity": sensitivity,
        "confidence": confidence,
        "sensitivity_lower_bound": fit.threshold.lower_bound,
        "sensitivity_bound_reached": fit.threshold.reached,
        "threshold_rule": (f"highest threshold whose one-sided {confidence:.0%} "
                           f"Clopper-Pearson lower bound of the sensitivity on the site's "
                           f"films reaches {sensitivity:g}"
                           + ("" if fit.threshold.reached else
                              " (not reachable with these films: every positive film "
                              "caught)")),
        "figures": figures,
        "figures_note": "on the films fitted on (calibration figures, not test figures)",
        "parent_figures": before,
    }
    return replace(parent, temperature=fit.temperature, bias=fit.bias,
                   threshold=fit.threshold.threshold,
                   threshold_rule=str(record["threshold_rule"]),
                   version=site_version(parent, name), site_calibration=record,
                   created=datetime.now(UTC).isoformat(timespec="seconds"))
