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


def finding_in(report: Dataset) -> str:
    for item in report.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == codes.PNEUMONIA.value:
            return str(item.ConceptCodeSequence[0].CodeValue)
    raise AssertionError("no pneumonia finding in the SR")
