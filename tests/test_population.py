"""The population check: DICOM age paths, the image classifier, and the shipped model's
verdicts on shared files of each kind (adult films, adult DICOMs, pediatric validation)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pneumoscan.imaging import DicomInfo, decode_image
from pneumoscan.population import (
    ADULT,
    ADULT_WARNING,
    AGE_WARNING,
    PEDIATRIC,
    UNKNOWN,
    UNKNOWN_WARNING,
    PopulationClassifier,
    age_between,
    age_in_years,
    assess_population,
    from_age,
    is_applicable,
    parse_age_string,
    population_features,
)
from pneumoscan.predictor import Predictor
from pneumoscan.scope import FEATURE_REASON, THUMBNAIL_SIDE, thumbnail


def header(**tags: str) -> DicomInfo:
    return DicomInfo(modality="CR", body_part="CHEST", photometric="MONOCHROME2",
                     view_position="PA", **tags)


@pytest.mark.parametrize(("value", "years"), [
    ("062Y", 62.0), ("018M", 1.5), ("010W", 70 / 365.25), ("003D", 3 / 365.25),
    ("62", 62.0), ("005y", 5.0), (" 081Y ", 81.0), ("130Y", 130.0),
])
def test_age_strings_in_every_unit(value: str, years: float) -> None:
    assert parse_age_string(value) == pytest.approx(years)


@pytest.mark.parametrize("value", ["", "Y", "abc", "62.5Y", "-05Y", "0062Y", "062X",
                                   "000Y", "0", "999Y", "1 year"])
def test_malformed_or_placeholder_ages_are_ignored(value: str) -> None:
    assert parse_age_string(value) is None


def test_age_from_birth_and_study_dates() -> None:
    assert age_between("19400305", "20040826") == pytest.approx(64.48, abs=0.01)
    assert age_between("20200101", "20220701") == pytest.approx(2.5, abs=0.01)


@pytest.mark.parametrize(("birth", "seen"), [
    ("", "20040826"), ("19400305", ""), ("1940-03-05", "20040826"), ("19401305", "20040826"),
    ("20050101", "20040826"), ("18000101", "20040826"), ("1940030", "20040826"),
])
def test_missing_malformed_or_impossible_dates_give_no_age(birth: str, seen: str) -> None:
    assert age_between(birth, seen) is None


def test_header_age_prefers_patient_age_then_study_then_acquisition_date() -> None:
    assert age_in_years(header(patient_age="003Y", birth_date="19400305",
                               study_date="20040826")) == 3.0
    assert age_in_years(header(patient_age="abc", birth_date="19400305",
                               study_date="20040826")) == pytest.approx(64.48, abs=0.01)
    assert age_in_years(header(birth_date="20200101",
                               acquisition_date="20220701")) == pytest.approx(2.5, abs=0.01)
    assert age_in_years(header()) is None


@pytest.mark.parametrize(("years", "population", "warning"), [
    (62.0, ADULT, ADULT_WARNING), (18.0, ADULT, ADULT_WARNING), (3.0, PEDIATRIC, ""),
    (1.0, PEDIATRIC, ""), (0.5, PEDIATRIC, AGE_WARNING), (12.0, PEDIATRIC, AGE_WARNING),
])
def test_age_bands(years: float, population: str, warning: str) -> None:
    result = from_age(years)
    assert (result.population, result.warning) == (population, warning)
    assert result.probability is None
    assert str(int(years)) not in result.reason.replace("1-5", "").replace("18", "") \
        or years in (1.0, 18.0)  # the band is named, never the value


#: A model input: what the layout thumbnail of the classifier's input is taken from.
RESIZED = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)


def classifier(threshold: float = 0.5, dimension: int = 3 + THUMBNAIL_SIDE**2,
               ) -> PopulationClassifier:
    """P(adult) = sigmoid(2 * x0): adult when the first pooled feature is clearly positive
    (the layout thumbnail after the pooled features weighs nothing)."""
    weight = np.zeros(dimension)
    weight[0] = 2.0
    return PopulationClassifier(mean=np.zeros(dimension), scale=np.ones(dimension),
                                weight=weight, bias=0.0, threshold=threshold, n_pediatric=10,
                                n_adult=10)


def test_the_classifier_reads_pooled_features_then_the_layout_thumbnail() -> None:
    features = population_features(np.array([1.0, 2.0, 3.0]), RESIZED)
    np.testing.assert_array_equal(features[:3], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(features[3:], thumbnail(RESIZED))


def test_classifier_probability_is_the_logistic_of_standardised_features() -> None:
    fitted = replace(classifier(dimension=3), mean=np.array([1.0, 0, 0]),
                     scale=np.array([2.0, 1, 1]))
    features = np.array([[1.0, 5, 5], [3.0, 0, 0]])  # standardised x0: 0 and 1
    np.testing.assert_allclose(fitted.probability(features), [0.5, 1 / (1 + np.exp(-2))])
    with pytest.raises(ValueError, match="fit-population"):
        fitted.probability(np.zeros(4))


def test_header_age_decides_before_the_image() -> None:
    adult_features, child_features = np.array([3.0, 0, 0]), np.array([-3.0, 0, 0])
    by_header = assess_population(header(patient_age="004Y"), adult_features, RESIZED, True,
                                  classifier())
    assert (by_header.population, by_header.probability) == (PEDIATRIC, None)
    assert "DICOM header" in by_header.reason
    by_image = assess_population(header(patient_age="abc"), adult_features, RESIZED, True,
                                 classifier())
    assert by_image.population == ADULT and by_image.warning == ADULT_WARNING
    assert by_image.probability == pytest.approx(1 / (1 + np.exp(-6)))
    child = assess_population(None, child_features, RESIZED, True, classifier())
    assert (child.population, child.warning) == (PEDIATRIC, "")


def test_unknown_when_not_a_chest_radiograph_or_not_fitted() -> None:
    out = assess_population(None, np.array([3.0, 0, 0]), RESIZED, False, classifier())
    assert (out.population, out.warning) == (UNKNOWN, UNKNOWN_WARNING)
    assert "does not look like a chest radiograph" in out.reason
    unfitted = assess_population(None, np.zeros(3), RESIZED, True, None)
    assert unfitted.population == UNKNOWN and "not fitted" in unfitted.reason
    # a header age still tells who the patient is, whatever the image looks like
    assert assess_population(header(patient_age="070Y"), np.zeros(3), RESIZED, False,
                             None).population == ADULT


def test_applicable_only_in_scope_without_a_population_warning() -> None:
    assert is_applicable(True, "")
    assert not is_applicable(True, ADULT_WARNING)
    assert not is_applicable(False, "")


def test_header_dates_stay_out_of_repr() -> None:
    info = header(patient_age="062Y", birth_date="19400305", study_date="20040826")
    assert "062Y" not in repr(info) and "1940" not in repr(info) and "2004" not in repr(info)


# --- the shipped model on real files -------------------------------------------------------


def write_with_tags(source: Path, target: Path, **tags: str) -> Path:
    """A copy of DICOM ``source`` with its age and date tags replaced by ``tags``."""
    dataset = pydicom.dcmread(source)
    for keyword in ("PatientAge", "PatientBirthDate", "StudyDate", "AcquisitionDate"):
        if keyword in dataset:
            delattr(dataset, keyword)
    for keyword, value in tags.items():
        setattr(dataset, keyword, value)
    dataset.save_as(target)
    return target


@pytest.mark.parametrize(("tags", "population", "from_header"), [
    ({"PatientAge": "062Y"}, ADULT, True),
    ({"PatientAge": "018M"}, PEDIATRIC, True),
    ({"PatientBirthDate": "19400305", "StudyDate": "20040826"}, ADULT, True),
    ({"PatientBirthDate": "20200101", "AcquisitionDate": "20230301"}, PEDIATRIC, True),
    ({"PatientAge": "6 2Y", "PatientBirthDate": "1940"}, ADULT, False),  # malformed: image
    ({}, ADULT, False),  # no tags: the image decides (an adult film)
])
def test_dicom_age_paths_through_the_predictor(
        shipped_predictor: Predictor, dicom_dir: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, tags: dict[str, str], population: str,
        from_header: bool) -> None:
    path = write_with_tags(dicom_dir / "cr_ap_256px_monochrome1.dcm", tmp_path / "x.dcm",
                           **tags)
    caplog.clear()  # pydicom warned about the malformed values while writing them
    with caplog.at_level(logging.DEBUG):
        result = shipped_predictor.predict(path, heatmap=False)
    assert result.population == population
    assert ("DICOM header" in result.population_reason) == from_header
    assert (result.population_probability is None) == from_header
    assert result.applicable == (result.in_scope and not result.population_warning)
    shown = str(result.to_dict()) + caplog.text
    for value in tags.values():  # no header value in the result or the logs
        assert value not in shown


def test_adult_films_are_called_adult(shipped_predictor: Predictor, adult_dir: Path) -> None:
    from pneumoscan.fitting.population_fitting import find_adult_images, split_adults

    held_out = split_adults(find_adult_images(adult_dir)).held_out
    adults = [s.path for s in held_out if s.path.parent.name == "NORMAL"][:2] \
        + [s.path for s in held_out if s.path.parent.name == "PNEUMONIA"][:2]
    results = [r.prediction for r in shipped_predictor.predict_files(adults)]
    assert [r.population if r else None for r in results] == [ADULT] * 4
    assert all(r is not None and r.population_warning == ADULT_WARNING and not r.applicable
               for r in results)


def test_adult_films_unlike_the_training_films_are_still_called_adult(
        shipped_predictor: Predictor, adult_dir: Path) -> None:
    """An adult's film is what the model's features find unlike its training films; out of
    scope for that reason alone, it is still a chest radiograph, and the population check
    says whose (before, "unknown")."""
    from pneumoscan.fitting.population_fitting import find_adult_images, split_adults

    held_out = [s.path for s in split_adults(find_adult_images(adult_dir)).held_out]
    results = [r.prediction for r in shipped_predictor.predict_files(held_out, batch_size=32)]
    unlike = [r for r in results if r is not None and r.scope_reason == FEATURE_REASON]
    assert unlike, "no held-out adult film is out of scope by its features alone: pick others"
    assert all(r.population == ADULT and not r.in_scope and not r.applicable for r in unlike)


def test_adult_dicoms_are_called_adult_by_the_image_alone(shipped_predictor: Predictor,
                                                          dicom_dir: Path) -> None:
    for name in ("dx_nih_no_finding.dcm", "cr_siim_pa_jpeg_baseline.dcm",
                 "cr_nema_pa_monochrome1_jpegls.dcm"):
        decoded = decode_image(dicom_dir / name)
        assert decoded.dicom is not None
        anonymous = replace(decoded, dicom=replace(decoded.dicom, patient_age="",
                                                   birth_date=""))
        result = shipped_predictor.predict_decoded([anonymous], heatmap=False)[0]
        assert result.population == ADULT, name
        assert result.population_probability is not None
        assert result.population_probability > shipped_predictor.population.threshold


def test_pediatric_validation_images_are_called_pediatric(shipped_predictor: Predictor,
                                                          chest_xray_dir: Path) -> None:
    from pneumoscan.dataset import training_split

    validation = training_split(shipped_predictor.card, chest_xray_dir).validation
    files = [s.path for s in validation if s.label == 0][:50] \
        + [s.path for s in validation if s.label == 1][:50]
    results = [r.prediction for r in shipped_predictor.predict_files(files, batch_size=32)]
    assert all(r is not None for r in results)
    # the target is at most 1 % of children called adult: at most one of these 100
    children = [r for r in results if r is not None and r.population == PEDIATRIC]
    assert len(children) >= 99
    assert all(r.population_warning == "" and r.applicable == r.in_scope for r in children)
