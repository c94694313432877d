"""The coded concepts of pneumoscan's DICOM results, in one place.

Standard codes (DICOM ``DCM``, SNOMED CT ``SCT``, ``UCUM``) wherever one says what we mean;
the rest in a private coding scheme, ``99PNEUMOSCAN`` (DICOM reserves designators starting
with ``99`` for local schemes), declared in each SR's Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pneumoscan.population import ADULT, PEDIATRIC, UNKNOWN

#: The private coding scheme's designator and its name for the SR header.
SCHEME = "99PNEUMOSCAN"
SCHEME_NAME = "pneumoscan AI result concepts"


def _private(value: str, meaning: str) -> Code:
    return Code(value, SCHEME, meaning)


#: The SR's document title (root container).
REPORT_TITLE = _private("PSR001", "Chest radiograph AI result (decision support)")
DISCLAIMER = _private("PSR002", "Disclaimer")
CAUSE_ESTIMATE = _private("PSR003", "Cause estimate (secondary, lower confidence)")
BACTERIAL_PROBABILITY = _private("PSR004", "Probability of a bacterial cause")
IN_SCOPE = _private("PSR005", "Input within the model's scope")
SCOPE_REASON = _private("PSR006", "Scope reason")
POPULATION = _private("PSR007", "Patient population")
POPULATION_REASON = _private("PSR008", "Population reason")
POPULATION_PROBABILITY = _private("PSR009", "Probability of an adult patient")
POPULATION_WARNING = _private("PSR010", "Population warning")
APPLICABLE = _private("PSR011", "Result applicable")
#: Derivation of the Secondary Capture: the heat map of the model's evidence.
HEATMAP_DERIVATION = _private("PSR020", "AI heat map overlay")

PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
BACTERIAL_PNEUMONIA = Code("53084003", "SCT", "Bacterial pneumonia")
VIRAL_PNEUMONIA = Code("75570004", "SCT", "Viral pneumonia")
#: The Prediction's ``cause`` values.
CAUSES = {"bacterial": BACTERIAL_PNEUMONIA, "viral": VIRAL_PNEUMONIA}
#: The Prediction's ``population`` values.
POPULATIONS = {PEDIATRIC: Code("67822003", "SCT", "Child"),
               ADULT: Code("133936004", "SCT", "Adult"),
               UNKNOWN: codes.SCT.Unknown}

PRESENT = codes.SCT.Present
ABSENT = codes.SCT.Absent
YES = codes.SCT.Yes
NO = codes.SCT.No
PROBABILITY = codes.DCM.Probability
THRESHOLD = codes.DCM.ThresholdValue
SOURCE_IMAGE = codes.DCM.SourceImage
NO_UNITS = codes.UCUM.NoUnits
DEVICE = codes.cid270.Device
