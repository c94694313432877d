"""How pneumoscan's result objects are identified and labelled in the PACS.

Results join the source image's study in two series of their own, one for the Structured
Reports and one for the heat-map Secondary Captures. Every UID is derived from the source's
UIDs and the model version (a one-way hash, pydicom's ``generate_uid`` with entropy
sources): sending the same image again, or retrying a send, gives the same objects, which a
PACS stores once, and all results of a study land in the same two series.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import generate_uid

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
    header = Dataset()
    header.update({element.tag: element for element in source
                   if element.tag not in PIXEL_DATA_TAGS})
    for name in IDENTITY_ATTRIBUTES:
        if name not in header:
            setattr(header, name, "")
    if str(header.PatientSex).strip().upper() not in PATIENT_SEX_VALUES:
        header.PatientSex = ""
    return header


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
