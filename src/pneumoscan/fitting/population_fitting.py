"""Fitting a model's population classifier: its pediatric training images against adults.

``pneumoscan fit-population`` (and ``benchmarks/population_rates.py``, which measures it).
A logistic regression (scikit-learn) on :func:`pneumoscan.population.population_features`
(the model's pooled features and the layout thumbnail), so it costs one dot product per
image on what the Predictor computes anyway. It is fitted on:

- the pediatric side: the model's training split, rebuilt from its card
  (:func:`pneumoscan.dataset.training_split`), so both validation sets stay unseen;
- the adult side: adult frontal films from one or more folders, each film tagged with its
  source (:func:`find_adult_sources`: the ``source`` column of a folder's ``labels.csv``,
  else the folder's name; ``../shared/data/adult_nih`` is one source, ``adult_other``
  holds two), and each source split by patient, a third held out (:func:`split_sources`)
  to measure the adult rate on. :func:`leave_one_source_out` holds a whole source out
  instead: how the check does on a hospital it has never seen;

plus randomly transformed copies (:data:`POPULATION_AUGMENT`): one of each pediatric image,
:data:`ADULT_COPIES` of each adult one. Framing, exposure, contrast and above all the
processing (edge enhancement) differ between hospitals, and the classifier must not learn
one collection's look for "adult". The threshold on P(adult) is the one the balanced classes
give, 0.5, raised when needed so that at most :data:`PEDIATRIC_EXCEED_FRACTION` of the
pediatric fitting images' out-of-fold scores exceed it.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pneumoscan.dataset import CLASS_NAMES, Sample, split_by_patient
from pneumoscan.fitted_state import save_population
from pneumoscan.fitting.scope_fitting import SCOPE_AUGMENT, augmented_copies
from pneumoscan.image_cache import load_resized
from pneumoscan.inputs import find_images
from pneumoscan.modelfile import ModelLike, resolve_model
from pneumoscan.population import (
    ADULT_HOLDOUT_FRACTION,
    ADULT_SPLIT_SEED,
    PopulationClassifier,
    population_features,
)
from pneumoscan.predictor import Predictor

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


#: Column of a folder's ``labels.csv`` that names each film's source (collection or
#: hospital); a folder without it is one source, named after the folder.
SOURCE_COLUMN = "source"
#: A trailing letter on a numbered patient id marks another film of the same case
#: (``figure1``'s ``COVID-00003a`` and ``COVID-00003b``): one patient for the split.
_CASE_FILM = re.compile(r"(?<=\d)[a-z]$")


@dataclass(frozen=True)
class AdultSplit:
    """Adult films by patient: those the classifier is fitted on, and those held out."""

    fit: list[Sample]
    held_out: list[Sample]


@dataclass(frozen=True)
class SourceFold:
    """One fold of :func:`leave_one_source_out`: every film of the other sources to fit
    on, and every film of ``source`` to measure on."""

    source: str
    fit: list[Sample]
    held_out: list[Sample]


def find_adult_images(folder: Path | str) -> list[Sample]:
    """Every image under ``folder``, with its patient id.

    The patient id comes from a ``labels.csv`` in the folder (columns ``file`` and
    ``patient_id``, as in ``adult_nih``), a trailing case letter dropped (``COVID-00003a``
    and ``COVID-00003b`` are one patient); without one, from the file name up to its first
    ``_`` (NIH's ``00001470_003``). ``label`` is the class folder (NORMAL / PNEUMONIA) when
    there is one, else 0; it only stratifies the split.

    Raises:
        FileNotFoundError: ``folder`` holds no images.
    """
    return [sample for sample, _ in _adult_images(Path(folder))]


def find_adult_sources(folders: Sequence[Path | str]) -> dict[str, list[Sample]]:
    """The adult films of ``folders`` by source (:data:`SOURCE_COLUMN`, else the folder's
    name), sources in order of first appearance, films in :func:`find_adult_images`' order.

    Raises:
        FileNotFoundError: a folder holds no images.
        ValueError: no folders, or two folders give a source the same name (films of one
            name must come from one folder, so that a benchmark can find them again).
    """
    if not folders:
        raise ValueError("no adult folders given")
    sources: dict[str, list[Sample]] = {}
    for folder in folders:
        found: dict[str, list[Sample]] = {}
        for sample, source in _adult_images(Path(folder)):
            found.setdefault(source, []).append(sample)
        clash = sorted(set(found) & set(sources))
        if clash:
            raise ValueError(f"{folder}: source(s) {clash} also come from another adult "
                             "folder; give each folder once, and sources distinct names")
        sources.update(found)
    return sources


def _adult_images(root: Path) -> list[tuple[Sample, str]]:
    """:func:`find_adult_images`' films, each with its source."""
    files = find_images(root)
    if not files:
        raise FileNotFoundError(f"{root}: no adult images (.jpeg .jpg .png .dcm) found")
    rows: dict[str, dict[str, str]] = {}
    labels_file = root / "labels.csv"
    if labels_file.is_file():
        with labels_file.open(newline="") as handle:
            rows = {row["file"]: row for row in csv.DictReader(handle)}
    folder_source = root.resolve().name
    found = []
    for path in files:
        row = rows.get(path.relative_to(root).as_posix(), {})
        patient = _CASE_FILM.sub("", row.get("patient_id") or "") or path.stem.split("_")[0]
        folder_name = path.parent.name.upper()
        label = CLASS_NAMES.index(folder_name) if folder_name in CLASS_NAMES else 0
        found.append((Sample(path, label, patient),
                      row.get(SOURCE_COLUMN) or folder_source))
    return found


def split_adults(adults: list[Sample], holdout_fraction: float = ADULT_HOLDOUT_FRACTION,
                 seed: int = ADULT_SPLIT_SEED) -> AdultSplit:
    """The one split of adult films into fitting and held-out patients."""
    fit, held_out = split_by_patient(adults, holdout_fraction, seed)
    return AdultSplit(fit, held_out)


def split_sources(sources: dict[str, list[Sample]],
                  holdout_fraction: float = ADULT_HOLDOUT_FRACTION,
                  seed: int = ADULT_SPLIT_SEED) -> dict[str, AdultSplit]:
    """:func:`split_adults` of each source on its own: every source has films in the fit
    and patients held out, and no patient is on both sides."""
    return {name: split_adults(films, holdout_fraction, seed)
            for name, films in sources.items()}


def leave_one_source_out(sources: dict[str, list[Sample]]) -> list[SourceFold]:
    """One :class:`SourceFold` per source, in order: that source held out whole, the
    others' films all fitted on.

    Raises:
        ValueError: fewer than two sources.
    """
    if len(sources) < 2:
        raise ValueError(f"leaving one source out needs at least two sources, got "
                         f"{sorted(sources)}")
    return [SourceFold(name, [s for other, films in sources.items() if other != name
                              for s in films], list(held_out))
            for name, held_out in sources.items()]


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
                               predictor.card.preprocessing.source_size,
                                cache_dir=cache_dir)
    if bad:
        logger.warning("%d unreadable image(s) left out of the population fit", len(bad))
    transformed = [augmented_copies(resized, seed, POPULATION_AUGMENT)
                   for seed in range(first_seed, first_seed + copies)]
    images = np.concatenate([resized, *transformed])  # (M, S, S)
    pooled = predictor.pooled_features(images)  # (M, C)
    return np.stack([population_features(vector, image)
                     for vector, image in zip(pooled, images, strict=True)])


def pediatric_features(predictor: Predictor, pediatric: Sequence[Sample], *,
                       cache_dir: Path | None = None) -> np.ndarray:
    """The pediatric side of a fit: :func:`fitting_features` of the training images and one
    transformed copy of each (seed :data:`PEDIATRIC_COPY_SEED`)."""
    return fitting_features(predictor, pediatric, first_seed=PEDIATRIC_COPY_SEED,
                            cache_dir=cache_dir)


def adult_features(predictor: Predictor, adults: Sequence[Sample], *,
                   cache_dir: Path | None = None) -> np.ndarray:
    """The adult side of a fit: :func:`fitting_features` of the films and
    :data:`ADULT_COPIES` transformed copies of each."""
    return fitting_features(predictor, adults, copies=ADULT_COPIES, cache_dir=cache_dir)


def fit_population(model: ModelLike, pediatric: Sequence[Sample],
                   adults: Sequence[Sample], *, cache_dir: Path | None = None,
                   notes: dict[str, str] | None = None,
                   ) -> tuple[PopulationClassifier, Path]:
    """Fit ``model``'s population classifier and store it beside its weights.

    Args:
        model: a model folder or ``.safetensors`` file (None: the shipped model).
        pediatric: its training images (:func:`~pneumoscan.dataset.training_split`).
        adults: the adult films to fit on (the ``fit`` shares of :func:`split_sources`).
        cache_dir: the decoded-image cache (default: ``~/.cache/pneumoscan``).
        notes: how the inputs were chosen, stored with the classifier.
    """
    files = resolve_model(model)
    predictor = Predictor.load(files, backend="torch")  # the features the check will see
    logger.info("population fit: %d pediatric and %d adult images, plus transformed copies",
                len(pediatric), len(adults))
    classifier = fit_classifier(pediatric_features(predictor, pediatric, cache_dir=cache_dir),
                                adult_features(predictor, adults, cache_dir=cache_dir))
    return classifier, save_population(classifier, files, notes)


def fit_population_on_folders(model: ModelLike, pediatric: Sequence[Sample],
                              adult_folders: Sequence[Path | str], *,
                              holdout_fraction: float = ADULT_HOLDOUT_FRACTION,
                              seed: int = ADULT_SPLIT_SEED, cache_dir: Path | None = None,
                              ) -> tuple[PopulationClassifier, Path, dict[str, AdultSplit]]:
    """:func:`fit_population` on the fitting share of each source's patients in
    ``adult_folders`` (:func:`find_adult_sources`, :func:`split_sources`); the folders,
    sources and split are noted with the classifier (:func:`split_notes`) so that
    ``benchmarks/population_rates.py`` measures on the held-out shares."""
    splits = split_sources(find_adult_sources(adult_folders), holdout_fraction, seed)
    notes = split_notes(adult_folders, splits, holdout_fraction, seed)
    classifier, path = fit_population(
        model, pediatric, [s for split in splits.values() for s in split.fit],
        cache_dir=cache_dir, notes=notes)
    return classifier, path, splits


def split_notes(adult_folders: Sequence[Path | str], splits: dict[str, AdultSplit],
                holdout_fraction: float, seed: int) -> dict[str, str]:
    """What is stored with a classifier about its adults: the folders' names (``adults``,
    a JSON list), the sources (``sources``), the split's settings and the held-out count
    (in all and per source, ``held_out.NAME``)."""
    notes = {"adults": json.dumps([Path(folder).resolve().name for folder in adult_folders]),
             "sources": json.dumps(list(splits)),
             "holdout_fraction": repr(holdout_fraction), "seed": str(seed),
             "adults_held_out": str(sum(len(split.held_out) for split in splits.values()))}
    notes.update({f"held_out.{name}": str(len(split.held_out))
                  for name, split in splits.items()})
    return notes


def describe_population(classifier: PopulationClassifier) -> str:
    """One line: what the classifier was fitted on and its threshold."""
    return (f"fitted on {classifier.n_pediatric} pediatric and {classifier.n_adult} adult "
            f"images (with transformed copies); threshold P(adult) > "
            f"{classifier.threshold:.3f}")
