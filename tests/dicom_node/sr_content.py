"""Reading values back out of a pneumoscan SR, as a PACS user's tool would."""

from __future__ import annotations

from pydicom.dataset import Dataset

from pneumoscan.dicom_node import codes


def probability_in(report: Dataset) -> float:
    def walk(items: list[Dataset]) -> float | None:
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeValue
            if name == codes.PROBABILITY.value:
                return float(item.MeasuredValueSequence[0].NumericValue)
            found = walk(item.get("ContentSequence", []))
            if found is not None:
                return found
        return None

    value = walk(report.ContentSequence)
    assert value is not None
    return value


def finding_in(report: Dataset) -> str | None:
    """The coded pneumonia finding; None when the SR codes none (the result does not
    apply)."""
    for item in report.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == codes.PNEUMONIA.value:
            return str(item.ConceptCodeSequence[0].CodeValue)
    return None


def model_output_in(report: Dataset) -> str | None:
    """The "Model output (not a finding)" text of a result that does not apply, or None."""
    for item in report.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == codes.MODEL_OUTPUT.value:
            return str(item.TextValue)
    return None
