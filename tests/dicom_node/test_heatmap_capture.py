"""The heat-map Secondary Capture: parsed back, in the source's study, pointing at it, with
the banner burned in."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage

from pneumoscan.dicom_node.heatmap_capture import (
    BANNER_WARNING,
    banner,
    banner_lines,
    build_heatmap_capture,
)
from pneumoscan.dicom_node.result_identity import NOT_FOR_DIAGNOSIS, SC_SERIES_NUMBER
from pneumoscan.predictor import Prediction, Predictor

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom on person names


@pytest.fixture
def prediction(onnx_predictor: Predictor, source_path) -> Prediction:
    return onnx_predictor.predict(source_path)


def reparsed(image: Dataset) -> Dataset:
    buffer = io.BytesIO()
    image.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_capture_identity_and_source_reference(source: Dataset,
                                               prediction: Prediction) -> None:
    capture = reparsed(build_heatmap_capture(source, prediction))
    assert capture.SOPClassUID == SecondaryCaptureImageStorage
    for name in ("PatientID", "PatientName", "StudyInstanceUID"):
        assert capture.get(name) == source.get(name), name
    assert capture.SeriesInstanceUID != source.SeriesInstanceUID
    assert capture.SeriesNumber == SC_SERIES_NUMBER
    (reference,) = capture.SourceImageSequence
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == source.SOPClassUID
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert capture.BurnedInAnnotation == "YES"
    assert capture.ImageType[:2] == ["DERIVED", "SECONDARY"]
    assert capture.ImageComments == NOT_FOR_DIAGNOSIS


def test_capture_pixels_are_the_banner_over_the_overlay(source: Dataset,
                                                        prediction: Prediction) -> None:
    capture = reparsed(build_heatmap_capture(source, prediction))
    assert capture.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert capture.PhotometricInterpretation == "YBR_FULL_422"
    assert capture.LossyImageCompression == "01"
    assert len(capture.PixelData) <= 500_000  # a tenth of the 3.7 MB uncompressed
    # Encapsulated, as a C-STORE must encode it (DCMTK refuses an explicit length).
    assert build_heatmap_capture(source, prediction)["PixelData"].is_undefined_length
    pixels = capture.pixel_array  # (H, W, 3), RGB
    assert pixels.shape[1] == prediction.width  # the source as every face decodes it
    top = banner(prediction, pixels.shape[1])
    # JPEG at quality 95: the banner within a few grey levels on average.
    assert np.abs(pixels[: top.shape[0]].astype(int) - top).mean() < 4
    # The first line is amber text on black.
    assert (np.abs(top.astype(int) - BANNER_WARNING).sum(axis=2) < 60).any()


def test_banner_lines_say_why_a_result_does_not_apply(prediction: Prediction) -> None:
    lines = [text for text, _ in banner_lines(prediction)]  # the shared films are adults
    assert lines[:2] == ["NOT APPLICABLE: adult", NOT_FOR_DIAGNOSIS]
    assert prediction.population_warning in lines
    assert not any(text.startswith(prediction.label) for text in lines)  # no bare label
    assert any("not a finding" in text for text in lines)
    outside = replace(prediction, in_scope=False, scope_reason="mostly black")
    lines = [text for text, _ in banner_lines(outside)]
    assert lines[0] == "NOT APPLICABLE: out of scope, adult"
    assert any(text.startswith("Out of scope: mostly black") for text in lines)
    child = replace(prediction, population="pediatric", population_warning="")
    lines = [text for text, _ in banner_lines(child)]
    assert lines[0] == NOT_FOR_DIAGNOSIS
    assert lines[1].startswith(child.label) and f"{child.probability:.1%}" in lines[1]


def test_capture_needs_a_heat_map(source: Dataset, prediction: Prediction) -> None:
    with pytest.raises(ValueError, match="heatmap=True"):
        build_heatmap_capture(source, replace(prediction, heatmap=None))
