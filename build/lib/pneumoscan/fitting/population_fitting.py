"""Fitting a model's population classifier: its pediatric training images against adults.

``pneumoscan fit-population`` (and ``benchmarks/population_rates.py``, which measures it).
A logistic regression (scikit-learn) on :func:`pneumoscan.population.population_features`
(the model's pooled features and the layout thumbnail), so it costs one dot product per
image on what the Predictor computes anyway. It is fitted on:

- the pediatric side: the model's training split, rebuilt from its card
  (:func:`pneumoscan.dataset.training_split`), so both validation sets stay unseen;
- the adult side: adult frontal films (``../shared/data/adult_nih``), split by patient, a
  third held out (:func:`split_adults`) to measure the adult rate on;

plus randomly transformed copies (:data:`POPULATION_AUGMENT`): one of each pediatric image,
:data:`ADULT_COPIES` of each adult one. Framing, exposure, contrast and above all the
processing (edge enhancement) differ between hospitals, and the classifier must not learn
one collection's look for "adult". The threshold on P(adult) is the one the balanced classes
give, 0.5, raised when needed so that at most :data:`PEDIATRIC_EXCEED_FRACTION` of the
pediatric fitting images' out-of-fold scores exceed it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pneumoscan.dataset import CLASS_NAMES, Sample, split_by_patient
from pneumoscan.fitting.scope_fitting import SCOPE_AUGMENT, augmented_copies
from pneumoscan.image_cache import load_resized
from pneumoscan.modelfile import save_population
from pneumoscan.population import (
    ADULT_HOLDOUT_FRACTION,
    ADULT_SPLIT_SEED,
    PopulationClassifier,
    population_features,
)
from pneumoscan.predictor import Predictor
from pneumoscan.reports.prediction_output import find_images

logger = logging.getLogger(__name__)

#: Inverse L2 strength of the logistic regression (on standardised features).
REGULARISATION_C = 0.1
#: Transformed copies of each adult film in the fit (there are few adults).
ADULT_COPIES = 6
#: The transforms of the copies: the scope fit's, with strong sharpening or blurring and
#: wider tone changes (how processing differs between hospitals).
POPULATION_AUGMENT = replace(SCOPE_AUGMENT, blur_sharpen=1.5, blur_sigma=1.0, contrast=0.4,
                             gamma=0.5)
#: Seed of the pediatric copies (the adult copies use 0, 1, ...).
PEDIATRIC_COPY_SEED = 100
#: Most pediatric fitting images (out of fold) allowed above the threshold.
PEDIATRIC_EXCEED_FRACTION = 0.005
#: Folds of the out-of-fold scores the threshold is checked on.
FOLDS = 5


@dataclass(frozen=True)
class AdultSplit:
    """Adult films by patient: those the classifier is fitted on, and those held out."""

    fit: list[Sample]
    held_out: list[Sample]


def find_adult_images(folder: Path | str) -> list[Sample]:
    """Every image under ``folder``, with its patient id.

    The patient id comes from a ``labels.csv`` in the folder (columns ``file`` and
    ``patient_id``, as in ``adult_nih``); without one, from the file name up to its first
    ``_`` (NIH's ``00001470_003``). ``label`` is the class folder (NORMAL / PNEUMONIA) when
    there is one, else 0; it only stratifies the split.

    Raises:
        FileNotFoundError: ``folder`` holds no images.
    """
    root = Path(folder)
    files = find_images(root)
    if not files:
        raise FileNotFoundError(f"{root}: no adult images (.jpeg .jpg .png .dcm) found")
    patients: dict[str, str] = {}
    labels_file = root / "labels.csv"
    if labels_file.is_file():
        with labels_file.open(newline="") as handle:
            patients = {row["file"]: row["patient_id"] for row in csv.DictReader(handle)}
    samples = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        patient = patients.get(relative) or path.stem.split("_")[0]
        folder_name = path.parent.name.upper()
        label = CLASS_NAMES.index(folder_name) if folder_name in CLASS_NAMES else 0
        samples.append(Sample(path, label, patient))
    return samples


def split_adults(adults: list[Sample], holdout_fraction: float = ADULT_HOLDOUT_FRACTION,
                 seed: int = ADULT_SPLIT_SEED) -> AdultSplit:
    """The one split of adult films into fitting and held-out patients."""
    fit, held_out = split_by_patient(adults, holdout_fraction, seed)
    return AdultSplit(fit, held_out)


def fit_classifier(pediatric: np.ndarray, adult: np.ndarray, *,
                   regularisation: float = REGULARISATION_C,
                   exceed_fraction: float = PEDIATRIC_EXCEED_FRACTION,
                   folds: int = FOLDS, seed: int = 0) -> PopulationClassifier:
    """A :class:`PopulationClassifier` of pooled features ``(N, C)`` and ``(M, C)``.

    Classes are weighted to balance (adults are few); the threshold is 0.5, or the
    ``1 - exceed_fraction`` quantile of the pediatric out-of-fold P(adult) when higher.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    features = np.concatenate([pediatric, adult]).astype(np.float64)
    is_adult = np.r_[np.zeros(len(pediatric)), np.ones(len(adult))]
    mean = features.mean(axis=0)
    scale = np.maximum(features.std(axis=0), 1e-6)
    standardised = (features - mean) / scale
    model = LogisticRegression(C=regularisation, class_weight="balanced", max_iter=5000)
    out_of_fold = cross_val_predict(
        model, standardised, is_adult, method="predict_proba",
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed))[:, 1]
    pediatric_scores = out_of_fold[: len(pediatric)]
    threshold = max(0.5, float(np.quantile(pediatric_scores, 1.0 - exceed_fraction)))
    model.fit(standardised, is_adult)
    return PopulationClassifier(mean=mean, scale=scale, weight=model.coef_[0].copy(),
                                bias=float(model.intercept_[0]), threshold=threshold,
                                n_pediatric=len(pediatric), n_adult=len(adult))


def fitting_features(predictor: Predictor, samples: Sequence[Sample], *, copies: int = 1,
                     first_seed: int = 0, cache_dir: Path | None = None) -> np.ndarray:
    """:func:`~pneumoscan.population.population_features` ``((1 + copies) N, D)`` of
    ``samples`` and ``copies`` transformed copies of each (seeds ``first_seed``, ...)."""
    resized, bad = load_resized(samples, predictor.card.preprocessing.image_size,
                                cache_dir=cache_dir)
    if bad:
        logger.warning("%d unreadable image(s) left out of the population fit", len(bad))
    transformed = [augmented_copies(resized, seed, POPULATION_AUGMENT)
                   for seed in range(first_seed, first_seed + copies)]
    images = np.concatenate([resized, *transformed])  # (M, S, S)
    pooled = predictor.pooled_features(images)  # (M, C)
    return np.stack([population_features(vector, image)
                     for vector, image in zip(pooled, images, strict=True)])


def fit_population(model: Path | str | None, pediatric: Sequence[Sample],
                   adults: Sequence[Sample], *, cache_dir: Path | None = None,
                   notes: dict[str, str] | None = None,
                   ) -> tuple[PopulationClassifier, Path]:
    """Fit ``model``'s population classifier and store it beside its weights.

    Args:
        model: a model folder or ``.safetensors`` file (None: the shipped model).
        pediatric: its training images (:func:`~pneumoscan.dataset.training_split`).
        adults: the adult films to fit on (:func:`split_adults`' ``fit``).
        cache_dir: the decoded-image cache (default: ``~/.cache/pneumoscan``).
        notes: how the inputs were chosen, stored with the classifier.
    """
    predictor = Predictor.load(model, backend="torch")  # the features the check will see
    logger.info("population fit: %d pediatric and %d adult images, plus transformed copies",
                len(pediatric), len(adults))
    classifier = fit_classifier(
        fitting_features(predictor, pediatric, first_seed=PEDIATRIC_COPY_SEED,
                         cache_dir=cache_dir),
        fitting_features(predictor, adults, copies=ADULT_COPIES, cache_dir=cache_dir))
    return classifier, save_population(classifier, model, notes)


def fit_population_on_folder(model: Path | str | None, pediatric: Sequence[Sample],
                             adults_dir: Path | str, *,
                             holdout_fraction: float = ADULT_HOLDOUT_FRACTION,
                             seed: int = ADULT_SPLIT_SEED, cache_dir: Path | None = None,
                             ) -> tuple[PopulationClassifier, Path, AdultSplit]:
    """:func:`fit_population` on the fitting share of the adult patients in ``adults_dir``
    (:func:`split_adults`), the split noted with the classifier so that
    ``benchmarks/population_rates.py`` measures on the held-out share."""
    split = split_adults(find_adult_images(adults_dir), holdout_fraction, seed)
    notes = {"adults": Path(adults_dir).resolve().name,
             "holdout_fraction": repr(holdout_fraction), "seed": str(seed),
             "adults_held_out": str(len(split.held_out))}
    classifier, path = fit_population(model, pediatric, split.fit, cache_dir=cache_dir,
                                      notes=notes)
    return classifier, path, split


def describe_population(classifier: PopulationClassifier) -> str:
    """One line: what the classifier was fitted on and its threshold."""
    return (f"fitted on {classifier.n_pediatric} pediatric and {classifier.n_adult} adult "
            f"images (with transformed copies); threshold P(adult) > "
            f"{classifier.threshold:.3f}")
