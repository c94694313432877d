"""What the node accepts and the C-STORE status of what it refuses."""

from __future__ import annotations

from copy import deepcopy

from pydicom import uid
from pydicom.dataset import Dataset

from pneumoscan.dicom_node import intake
from pneumoscan.errors import ImageDecodeError, ImageTooLargeError, ImageTooSmallError
from pneumoscan.imaging import DicomInfo, decode_image


def test_the_usual_transfer_syntaxes_are_accepted() -> None:
    accepted = intake.accepted_transfer_syntaxes()
    for syntax in (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian,
                   uid.JPEGBaseline8Bit, uid.JPEGLSLossless, uid.JPEG2000Lossless,
                   uid.JPEG2000, uid.RLELossless):
        assert syntax in accepted, syntax.name
    assert uid.MPEG2MPML not in accepted


def test_header_checks(source: Dataset) -> None:
    assert intake.check_received(source) is None
    no_pixels = deepcopy(source)
    del no_pixels.PixelData
    refusal = intake.check_received(no_pixels)
    assert refusal is not None and refusal.status == intake.DOES_NOT_MATCH_SOP_CLASS
    no_study = deepcopy(source)
    del no_study.StudyInstanceUID
    refusal = intake.check_received(no_study)
    assert refusal is not None and refusal.status == intake.DOES_NOT_MATCH_SOP_CLASS


def test_decode_errors_map_to_statuses() -> None:
    assert intake.refusal_for_decode_error(ImageTooLargeError("x")).status == 0xA700
    assert intake.refusal_for_decode_error(ImageTooSmallError("x")).status == intake.TOO_SMALL
    assert intake.refusal_for_decode_error(ImageDecodeError("x")).status == 0xC100
    assert intake.refusal_for_decode_error(KeyError("x")).status == intake.PROCESSING_FAILED


def test_skips_use_the_scope_rules(source_path) -> None:
    decoded = decode_image(source_path)
    assert intake.skip_reason(decoded.dicom) == "" and intake.skip_reason(None) == ""
    lateral = DicomInfo(modality="CR", body_part="CHEST", photometric="MONOCHROME2",
                        view_position="LL")
    assert "lateral" in intake.skip_reason(lateral)
    ct = DicomInfo(modality="CT", body_part="CHEST", photometric="MONOCHROME2",
                   view_position="")
    assert "not a projection radiograph" in intake.skip_reason(ct)


def test_other_sop_classes_are_refused(source: Dataset) -> None:
    report = deepcopy(source)
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    refusal = intake.check_received(report)
    assert refusal is not None and refusal.status == intake.DOES_NOT_MATCH_SOP_CLASS
