"""The Comprehensive SR built from a real prediction: parsed back with pydicom and
highdicom, with its UIDs, references, codes and values checked."""

from __future__ import annotations

import io
from dataclasses import replace

import highdicom as hd
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ComprehensiveSRStorage

from pneumoscan.dicom_node import codes
from pneumoscan.dicom_node.result_identity import (
    DISCLAIMER_TEXT,
    SR_SERIES_NUMBER,
    SourceDatasetError,
    result_uids,
)
from pneumoscan.dicom_node.structured_report import build_structured_report
from pneumoscan.predictor import Prediction, Predictor

from .conftest import renamed

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom on person names


@pytest.fixture
def prediction(onnx_predictor: Predictor, source_path) -> Prediction:
    return onnx_predictor.predict(source_path)


@pytest.fixture
def applicable(prediction: Prediction) -> Prediction:
    """The shared film's prediction as if the header said a child of 1-5: it applies."""
    return replace(prediction, population="pediatric", population_warning="",
                   population_reason="DICOM header: patient aged 1-5 years")


def reparsed(sr: Dataset) -> hd.sr.ComprehensiveSR:
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return hd.sr.ComprehensiveSR.from_dataset(pydicom.dcmread(buffer))


def items(sr: Dataset, concept: pydicom.sr.coding.Code) -> list[Dataset]:
    """Content items named ``concept`` anywhere in the tree."""
    found = []

    def walk(sequence: list[Dataset]) -> None:
        for item in sequence:
            name = item.ConceptNameCodeSequence[0]
            if (name.CodeValue, name.CodingSchemeDesignator) == (concept.value,
                                                                concept.scheme_designator):
                found.append(item)
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return found


def code_of(item: Dataset) -> tuple[str, str]:
    value = item.ConceptCodeSequence[0]
    return value.CodeValue, value.CodingSchemeDesignator


def number_of(item: Dataset) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


def test_sr_identity_uids_and_evidence(source: Dataset, prediction: Prediction) -> None:
    sr = reparsed(build_structured_report(source, prediction))
    assert sr.SOPClassUID == ComprehensiveSRStorage
    assert sr.Modality == "SR"
    # Same patient and study, a series of its own, UIDs derived from the source's.
    for name in ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber"):
        assert sr.get(name) == source.get(name), name
    uids = result_uids(source, prediction.model)
    assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == (uids.sr_series, uids.sr_instance)
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.SeriesNumber == SR_SERIES_NUMBER
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert referenced.ReferencedSOPClassUID == source.SOPClassUID
    assert any(s.CodingSchemeDesignator == codes.SCHEME
               for s in sr.CodingSchemeIdentificationSequence)


def test_sr_content_carries_the_finding_and_its_numbers(source: Dataset,
                                                        applicable: Prediction) -> None:
    prediction = applicable
    sr = reparsed(build_structured_report(source, prediction))
    title = sr.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == (codes.REPORT_TITLE.value,
                                                              codes.SCHEME)
    (finding,) = items(sr, codes.PNEUMONIA)
    expected = codes.PRESENT if prediction.is_pneumonia else codes.ABSENT
    assert code_of(finding) == (expected.value, "SCT")
    (probability,) = items(sr, codes.PROBABILITY)
    assert number_of(probability) == pytest.approx(prediction.probability, abs=1e-6)
    (threshold,) = items(sr, codes.THRESHOLD)
    assert number_of(threshold) == pytest.approx(prediction.threshold)
    (image,) = items(sr, codes.SOURCE_IMAGE)
    assert image.RelationshipType == "INFERRED FROM"
    reference = image.ReferencedSOPSequence[0]
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    (disclaimer,) = items(sr, codes.DISCLAIMER)
    assert disclaimer.TextValue == DISCLAIMER_TEXT
    assert "not for diagnostic use" in disclaimer.TextValue
    names = [item.TextValue for item in items(sr, pydicom.sr.codedict.codes.DCM.AlgorithmVersion)]
    assert names == [prediction.model]


def test_sr_scope_and_population(source: Dataset, prediction: Prediction) -> None:
    sr = reparsed(build_structured_report(source, prediction))
    (scope,) = items(sr, codes.IN_SCOPE)
    assert code_of(scope) == ((codes.YES if prediction.in_scope else codes.NO).value, "SCT")
    (population,) = items(sr, codes.POPULATION)
    assert code_of(population)[0] == codes.POPULATIONS[prediction.population].value
    # The shared radiographs are of adults: a warning, and the result does not apply.
    assert prediction.population == "adult" and prediction.population_warning
    (warning,) = items(sr, codes.POPULATION_WARNING)
    assert warning.TextValue == prediction.population_warning
    (applicable,) = items(sr, codes.APPLICABLE)
    assert code_of(applicable) == (codes.NO.value, "SCT")


def test_sr_cause_only_for_an_applicable_pneumonia(source: Dataset,
                                                   prediction: Prediction) -> None:
    adult = replace(prediction, probability=0.97, cause="viral", cause_probability=0.2)
    assert not adult.applicable  # the shared film is an adult's
    assert items(reparsed(build_structured_report(source, adult)), codes.CAUSE_ESTIMATE) == []
    positive = replace(adult, population="pediatric", population_warning="",
                       population_probability=0.01)
    sr = reparsed(build_structured_report(source, positive))
    (cause,) = items(sr, codes.CAUSE_ESTIMATE)
    assert code_of(cause) == (codes.VIRAL_PNEUMONIA.value, "SCT")
    (bacterial,) = items(sr, codes.BACTERIAL_PROBABILITY)
    assert number_of(bacterial) == pytest.approx(0.2)
    negative = replace(positive, probability=0.01, cause=None, cause_probability=None)
    sr = reparsed(build_structured_report(source, negative))
    assert items(sr, codes.CAUSE_ESTIMATE) == []
    assert code_of(items(sr, codes.PNEUMONIA)[0]) == (codes.ABSENT.value, "SCT")


def test_sr_says_whether_the_result_applies_before_the_finding(
        source: Dataset, applicable: Prediction) -> None:
    sr = reparsed(build_structured_report(source, applicable))
    names = [item.ConceptNameCodeSequence[0].CodeValue for item in sr.ContentSequence]
    assert names.index(codes.APPLICABLE.value) < names.index(codes.PNEUMONIA.value)
    assert names.index(codes.POPULATION.value) < names.index(codes.PNEUMONIA.value)


def test_sr_codes_no_finding_for_a_result_that_does_not_apply(
        source: Dataset, prediction: Prediction) -> None:
    adult = replace(prediction, probability=0.982, label="PNEUMONIA", cause="viral",
                    cause_probability=0.3)
    assert not adult.applicable  # the shared film is an adult's (header age)
    sr = reparsed(build_structured_report(source, adult))
    assert items(sr, codes.PNEUMONIA) == [] and items(sr, codes.PROBABILITY) == []
    assert items(sr, codes.THRESHOLD) == [] and items(sr, codes.CAUSE_ESTIMATE) == []
    (applicability,) = items(sr, codes.APPLICABLE)
    assert code_of(applicability) == (codes.NO.value, "SCT")
    reasons = [item.TextValue for item in items(sr, codes.NOT_APPLICABLE_REASON)]
    assert reasons == list(adult.meaning.reasons) == [adult.population_warning]
    (image,) = items(sr, codes.SOURCE_IMAGE)  # what the verdict is about
    assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    (output,) = items(sr, codes.MODEL_OUTPUT)  # in words, named "not a finding"
    assert "PNEUMONIA" in output.TextValue and "not a finding" in output.TextValue
    photo = replace(adult, in_scope=False, scope_reason="colour image")
    sr = reparsed(build_structured_report(source, photo))
    assert items(sr, codes.PNEUMONIA) == [] and items(sr, codes.MODEL_OUTPUT) == []
    reasons = [item.TextValue for item in items(sr, codes.NOT_APPLICABLE_REASON)]
    assert reasons[0].startswith("Out of scope: colour image")


def test_sr_out_of_scope_reason_and_applicable(source: Dataset,
                                               prediction: Prediction) -> None:
    outside = replace(prediction, in_scope=False, scope_reason="mostly black")
    sr = reparsed(build_structured_report(source, outside))
    assert code_of(items(sr, codes.IN_SCOPE)[0]) == (codes.NO.value, "SCT")
    assert items(sr, codes.SCOPE_REASON)[0].TextValue == "mostly black"
    fitting = replace(prediction, population="pediatric", population_warning="",
                      population_reason="DICOM age")
    sr = reparsed(build_structured_report(source, fitting))
    assert code_of(items(sr, codes.APPLICABLE)[0]) == (codes.YES.value, "SCT")
    assert code_of(items(sr, codes.POPULATION)[0]) == ("67822003", "SCT")


def test_sr_uids_follow_the_image_and_the_model(source: Dataset,
                                                prediction: Prediction) -> None:
    """Same image and model: the same UIDs (a result sent again replaces itself). Another
    image of the study: another instance in the same result series. Another model: a
    series of its own."""
    def uids(sr: Dataset) -> tuple[str, str]:
        return str(sr.SeriesInstanceUID), str(sr.SOPInstanceUID)

    first = uids(build_structured_report(source, prediction))
    assert uids(build_structured_report(source, prediction)) == first
    other_image = uids(build_structured_report(renamed(source), prediction))
    assert other_image[0] == first[0] and other_image[1] != first[1]
    other_model = uids(build_structured_report(source, replace(prediction, model="other")))
    assert other_model[0] != first[0] and other_model[1] not in (first[1], other_image[1])


def test_sr_needs_the_source_uids(source: Dataset, prediction: Prediction) -> None:
    del source.StudyInstanceUID
    with pytest.raises(SourceDatasetError, match="StudyInstanceUID"):
        build_structured_report(source, prediction)


def test_sr_for_a_source_without_patient_attributes(source: Dataset,
                                                    prediction: Prediction) -> None:
    for name in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID"):
        if name in source:
            delattr(source, name)
    sr = reparsed(build_structured_report(source, prediction))
    assert sr.PatientBirthDate == "" and sr.PatientID == source.PatientID
