"""How pneumoscan's result objects are identified and labelled in the PACS.

Results join the source image's study in two series of their own, one for the Structured
Reports and one for the heat-map Secondary Captures. Every UID is derived from the source's
UIDs and the model version (a one-way hash, pydicom's ``generate_uid`` with entropy
sources): sending the same image again, or retrying a send, gives the same objects, which a
PACS stores once, and all results of a study land in the same two series.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, DT, TM, validate_value

from pneumoscan import DISCLAIMER
from pneumoscan.errors import PneumoscanError

#: The words every result carries, on the SR and burned into the heat map.
NOT_FOR_DIAGNOSIS = "AI result - decision support, not for diagnostic use"
DISCLAIMER_TEXT = f"{NOT_FOR_DIAGNOSIS}. {DISCLAIMER}"
MANUFACTURER = "pneumoscan"
SR_SERIES_NUMBER = 9901  # high numbers: after the modality's own series in a viewer
SC_SERIES_NUMBER = 9902
SR_SERIES_DESCRIPTION = "pneumoscan AI result (not for diagnostic use)"
SC_SERIES_DESCRIPTION = "pneumoscan AI heat map (not for diagnostic use)"
#: Attributes a source must carry for a result to be filed beside it.
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
#: Patient and study attributes copied into results: Type 2 (present, possibly empty) in
#: the SR and Secondary Capture IODs, so a source that lacks one gets it empty.
IDENTITY_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                       "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                       "ReferringPhysicianName")
PATIENT_SEX_VALUES = frozenset({"M", "F", "O"})
PIXEL_DATA_TAGS = frozenset({Tag("PixelData"), Tag("FloatPixelData"),
                             Tag("DoubleFloatPixelData")})
#: Value representations with a strict form (dates, times, ages, codes, numbers, UIDs): a
#: source element whose value is not of that form (StudyDate "2024-01-02", PatientAge "62",
#: a CS "Yes") is left out of the results instead of making them non-conformant.
STRICT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
_TEMPORAL = {"DA": DA, "DT": DT, "TM": TM}


class SourceDatasetError(PneumoscanError, ValueError):
    """The source dataset lacks what a result needs (its study and instance UIDs)."""


@dataclass(frozen=True)
class ResultUids:
    """Series and instance UIDs of one source image's SR and Secondary Capture."""

    sr_series: str
    sr_instance: str
    sc_series: str
    sc_instance: str


def check_source(source: Dataset) -> None:
    """Raise :class:`SourceDatasetError` unless ``source`` has the UIDs a result needs."""
    missing = [name for name in REQUIRED_UIDS if not str(source.get(name, "")).strip()]
    if missing:
        raise SourceDatasetError(f"the dataset has no {', '.join(missing)}: a result cannot "
                                 "be filed in its study")


def evidence_header(source: Dataset) -> Dataset:
    """The header of ``source`` as results copy it: no pixel data, every attribute of
    :data:`IDENTITY_ATTRIBUTES` present (empty when the source lacks it or, for the sex,
    holds a value outside M, F, O)."""
    check_source(source)
    header = valid_elements(source)
    for name in IDENTITY_ATTRIBUTES:
        if name not in header:
            setattr(header, name, "")
    if str(header.PatientSex).strip().upper() not in PATIENT_SEX_VALUES:
        header.PatientSex = ""
    return header


def valid_elements(source: Dataset) -> Dataset:
    """The elements of ``source`` (pixel data excluded; sequences item by item) whose
    values are of their VR's form (:data:`STRICT_VRS`); the others are left out.

    Values are checked on their raw text before pydicom converts them: converting an
    invalid one makes pydicom log it, and header values are patient data.
    """
    header = Dataset()
    for element in source.elements():
        if element.tag in PIXEL_DATA_TAGS:
            continue
        vr = element.VR or _dictionary_vr(element.tag)
        if vr == "SQ":
            items = source[element.tag].value or []
            header.add_new(element.tag, "SQ", Sequence([valid_elements(i) for i in items]))
        elif vr not in STRICT_VRS or _is_valid(vr, element):
            header[element.tag] = element
    return header


def _dictionary_vr(tag: Any) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:  # a private or unknown tag read as implicit VR
        return "UN"


def _is_valid(vr: str, element: RawDataElement | DataElement) -> bool:
    """Whether every value of ``element`` is of the form ``vr`` requires (no logging)."""
    value = element.value
    if isinstance(value, bytes | bytearray):
        values = bytes(value).decode("latin-1").split("\\")
    elif isinstance(value, MultiValue | list | tuple):
        values = [str(v) for v in value]
    else:
        values = [] if value is None else [str(value)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for text in values:
            text = text.strip(" \x00")
            if not text:
                continue
            try:
                validate_value(vr, text, config.RAISE)
                if vr in _TEMPORAL:
                    _TEMPORAL[vr](text)  # the form allows "20241399"; the calendar does not
            except (ValueError, TypeError, OverflowError):
                return False
    return True


def result_uids(source: Dataset, model_version: str) -> ResultUids:
    """The UIDs of ``source``'s results for ``model_version`` (same inputs, same UIDs)."""
    check_source(source)
    study, instance = str(source.StudyInstanceUID), str(source.SOPInstanceUID)

    def derived(*parts: str) -> str:
        return str(generate_uid(entropy_srcs=["pneumoscan", model_version, *parts]))

    return ResultUids(sr_series=derived(study, "sr-series"),
                      sr_instance=derived(study, instance, "sr"),
                      sc_series=derived(study, "sc-series"),
                      sc_instance=derived(study, instance, "sc"))


def instance_number(source: Dataset) -> int:
    """The source's Instance Number, so results sort like their images (1 when absent)."""
    try:
        return max(1, int(source.get("InstanceNumber", 1) or 1))
    except (TypeError, ValueError):
        return 1
