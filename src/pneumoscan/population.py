"""Population check: is the patient from the population this model was validated on?

The model was trained and validated on children aged 1-5 from one centre. On adult
radiographs it is close to useless (AUC 0.705, sensitivity 0.73, specificity 0.55 on 588
NIH adult films with radiologist labels, measured independently; issue 16), and adults are
most of the people whose films reach a chest X-ray page. Every result therefore carries a
``population`` (:data:`PEDIATRIC`, :data:`ADULT` or :data:`UNKNOWN`), a reason a person
can read, and a warning when the answer does not apply. The first source that can answer
decides:

1. the DICOM header: ``PatientAge`` (``062Y``, ``018M``, ``010W``, ``003D``; a bare number
   is read as years, as many writers leave the unit out), else ``PatientBirthDate`` with
   ``StudyDate`` or ``AcquisitionDate``. Malformed or implausible values are ignored. The
   values are never logged and never written into a reason: a reason names the age band
   only ("18 years or older");
2. the image: a logistic regression (:class:`PopulationClassifier`, fitted by
   ``pneumoscan fit-population`` on the pediatric training split and adult films, stored
   beside the weights like the scope statistics) on what the Predictor has computed
   anyway: the model's pooled features plus the image's layout thumbnail
   (:func:`pneumoscan.scope.thumbnail`: where the dark lungs, the mediastinum, the arms
   and the neck are). The features alone judged a strongly processed adult film from
   another hospital by the processing, which it shares with the pediatric films; the
   layout is blind to processing (docs/experiments.md). It answers only for chest
   radiographs (:func:`pneumoscan.scope.is_chest_radiograph`: in scope, or out of it only
   because the model's features find the film unlike its training films, as they find
   most adults' films): on a photograph its answer would mean nothing;
3. neither: :data:`UNKNOWN`, with a warning.

``in_scope`` stays about "is this a frontal chest radiograph"; this check is about who is
on it. A result is *applicable* (:func:`is_applicable`) when it is in scope and carries no
population warning.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from pneumoscan.imaging import DicomInfo
from pneumoscan.scope import thumbnail

PEDIATRIC = "pediatric"
ADULT = "adult"
UNKNOWN = "unknown"
POPULATIONS = (PEDIATRIC, ADULT, UNKNOWN)

#: Age, in years, from which a patient counts as an adult.
ADULT_AGE_YEARS = 18.0
#: The ages the model was trained and validated on: from 1 year up to (not including) 6.
VALIDATED_AGE_YEARS = (1.0, 6.0)
#: Oldest age accepted from a header; anything above is a malformed value.
MAX_AGE_YEARS = 130.0
#: Days per unit of a DICOM age string (``AS``: three digits and D, W, M or Y).
AGE_UNIT_DAYS = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}

ADULT_WARNING = ("Outside the population this model was validated on (children aged 1-5): "
                 "its accuracy on adults is poor. Do not use this result for an adult.")
AGE_WARNING = ("Outside the ages this model was validated on (children aged 1-5): its "
               "accuracy at this age is unknown.")
UNKNOWN_WARNING = ("The patient's population could not be determined; this model was "
                   "validated on children aged 1-5 only.")

#: The adult films' split into fitting and held-out patients (``population_fitting``):
#: a third of the patients held out, to measure the adult rate on; its seed.
ADULT_HOLDOUT_FRACTION = 1 / 3
ADULT_SPLIT_SEED = 0

_AGE_STRING = re.compile(r"(\d{1,3})\s*([DWMY])?")
_DATE = re.compile(r"\d{8}")


@dataclass(frozen=True)
class PopulationResult:
    """Who the image is of, as far as the header or the image tells."""

    population: str  # one of POPULATIONS
    reason: str  # for a person; never holds a header value
    probability: float | None = None  # P(adult) from the image; None when not from the image
    warning: str = ""  # "" when the model's result applies to this population


@dataclass(frozen=True)
class PopulationClassifier:
    """Logistic regression of "adult" on :func:`population_features` ``(C + T,)``.

    ``P(adult) = sigmoid(weight . (x - mean) / scale + bias)``; above ``threshold``: adult.
    """

    mean: np.ndarray  # (D,) = (C + T,)
    scale: np.ndarray  # (D,), standard deviations of the fitting features (never 0)
    weight: np.ndarray  # (D,)
    bias: float
    threshold: float  # on P(adult)
    n_pediatric: int  # fitting images of each kind (augmented copies included)
    n_adult: int

    def probability(self, pooled: np.ndarray) -> np.ndarray:
        """P(adult) of :func:`population_features` ``(D,)`` or ``(N, D)``: a float array of
        the batch shape.

        Raises:
            ValueError: the features' dimension is not the fitted one (another model).
        """
        features = np.asarray(pooled, dtype=np.float64)
        if features.shape[-1] != len(self.mean):
            raise ValueError(f"the population classifier has {len(self.mean)} dimensions, "
                             f"the input {features.shape[-1]}; refit it: pneumoscan "
                             "fit-population MODEL --data DATA --adults ADULTS")
        logit = ((features - self.mean) / self.scale) @ self.weight + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-logit)))


def population_features(pooled: np.ndarray, resized: np.ndarray) -> np.ndarray:
    """What the image classifier reads: the model's pooled features ``(C,)`` and the
    layout :func:`~pneumoscan.scope.thumbnail` of the ``(S, S)`` model input, ``(C + T,)``."""
    return np.concatenate([np.asarray(pooled, np.float64), thumbnail(resized)])


def age_in_years(dicom: DicomInfo) -> float | None:
    """The patient's age from the header, or None when absent, malformed or implausible."""
    age = parse_age_string(dicom.patient_age)
    if age is None:
        age = age_between(dicom.birth_date, dicom.study_date or dicom.acquisition_date)
    return age


def parse_age_string(value: str) -> float | None:
    """Years from a DICOM age string: ``062Y`` -> 62.0, ``018M`` -> 1.5, ``010W``, ``003D``.

    A bare number is read as years (``62``). Anything else is None, and so is zero
    (``000Y``: the placeholder some writers put for "not known") and an age above
    :data:`MAX_AGE_YEARS`.
    """
    match = _AGE_STRING.fullmatch(value.strip().upper())
    if match is None or int(match.group(1)) == 0:
        return None
    years = int(match.group(1)) * AGE_UNIT_DAYS[match.group(2) or "Y"] / AGE_UNIT_DAYS["Y"]
    return years if years <= MAX_AGE_YEARS else None


def age_between(birth_date: str, on_date: str) -> float | None:
    """Years from DICOM dates (``YYYYMMDD``) of birth to ``on_date``; None when either is
    missing or malformed, or the birth would come after it or more than 130 years before."""
    born, seen = _parse_date(birth_date), _parse_date(on_date)
    if born is None or seen is None or seen < born:
        return None
    years = (seen - born).days / AGE_UNIT_DAYS["Y"]
    return years if years <= MAX_AGE_YEARS else None


def _parse_date(value: str) -> date | None:
    text = value.strip()
    if not _DATE.fullmatch(text):
        return None
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:  # 20241332 and the like
        return None


def from_age(years: float) -> PopulationResult:
    """The population of a patient of ``years`` (from the header)."""
    if years >= ADULT_AGE_YEARS:
        return PopulationResult(ADULT, "DICOM header: patient aged 18 years or older",
                                warning=ADULT_WARNING)
    low, high = VALIDATED_AGE_YEARS
    if low <= years < high:
        return PopulationResult(PEDIATRIC, "DICOM header: patient aged 1-5 years")
    band = "under 1 year" if years < low else "6-17 years"
    return PopulationResult(PEDIATRIC, f"DICOM header: patient aged {band}",
                            warning=AGE_WARNING)


def from_image(probability: float, classifier: PopulationClassifier) -> PopulationResult:
    """The population the image looks like, from the classifier's P(adult)."""
    if probability > classifier.threshold:
        return PopulationResult(ADULT, "the image looks like an adult radiograph "
                                "(estimated from the image)", probability, ADULT_WARNING)
    return PopulationResult(PEDIATRIC, "the image looks like the pediatric radiographs the "
                            "model was trained on (estimated from the image)", probability)


def assess_population(dicom: DicomInfo | None, pooled: np.ndarray, resized: np.ndarray,
                      chest_radiograph: bool,
                      classifier: PopulationClassifier | None) -> PopulationResult:
    """Header first, then the image (only a chest radiograph, only with a classifier), else
    unknown.

    Args:
        dicom: the header facts of a DICOM input, None for other formats.
        pooled: the model's pooled features of the image ``(C,)``.
        resized: the ``(S, S)`` uint8 model input.
        chest_radiograph: the scope check's :func:`~pneumoscan.scope.is_chest_radiograph`.
        classifier: the model's fitted classifier, None when it has none.
    """
    years = age_in_years(dicom) if dicom is not None else None
    if years is not None:
        return from_age(years)
    if not chest_radiograph:
        return PopulationResult(UNKNOWN, "not assessed: the image does not look like a "
                                "chest radiograph",
                                warning=UNKNOWN_WARNING)
    if classifier is None:
        return PopulationResult(UNKNOWN, "population check not fitted for this model",
                                warning=UNKNOWN_WARNING)
    probability = float(classifier.probability(population_features(pooled, resized)))
    if not math.isfinite(probability):
        return PopulationResult(UNKNOWN, "the image-based estimate failed",
                                warning=UNKNOWN_WARNING)
    return from_image(probability, classifier)


def is_applicable(in_scope: bool, population_warning: str) -> bool:
    """Whether a result may be read as a finding: in scope, and no population warning."""
    return in_scope and not population_warning
