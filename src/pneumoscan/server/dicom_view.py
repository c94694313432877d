"""What the page needs to show a DICOM as a reader would: who it is, and its full depth.

- :func:`patient_identity`: name, ID, birth date, sex, accession number, study date and
  description, so that the study header and the printed report name the patient (the
  wrong-patient error is what they guard against). They go into the response to the user
  who uploaded the file and nowhere else: never logged, never stored.
- :func:`display_values`: the modality-LUT-applied values (Rescale Slope/Intercept or a
  Modality LUT: what WindowCenter/WindowWidth are expressed in) as a 16-bit grayscale PNG,
  with the file's window presets, so that the browser windows the full depth itself
  instead of an 8-bit rendering that cannot be recovered.

Both read the upload's header again (and, for the values, its pixels): a second decode, on
the page's request only (``image=true``), kept apart from the one the prediction uses.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

#: Header elements of the patient's identity, and the response fields they fill.
IDENTITY_FIELDS = {
    "name": "PatientName",
    "patient_id": "PatientID",
    "birth_date": "PatientBirthDate",
    "sex": "PatientSex",
    "accession_number": "AccessionNumber",
    "study_date": "StudyDate",
    "study_description": "StudyDescription",
}
#: Longest side of the values PNG (as the 8-bit preview's: the page's zoom is over it).
MAX_SIDE = 1024
#: Largest 16-bit code.
TOP = 65535


@dataclass(frozen=True)
class DisplayValues:
    """The values as a 16-bit PNG: ``value = offset + scale * code`` for each PNG code."""

    png: bytes
    offset: float
    scale: float
    low: float  # the smallest and largest value in the image
    high: float
    presets: list[dict[str, Any]]  # {"name", "center", "width"}: the file's windows
    monochrome1: bool  # low values are bright: the browser inverts the grey scale

    def to_dict(self) -> dict[str, Any]:
        return {"png": base64.b64encode(self.png).decode("ascii"), "offset": self.offset,
                "scale": self.scale, "low": self.low, "high": self.high,
                "presets": self.presets, "monochrome1": self.monochrome1}


def read_header(data: bytes) -> Any:
    """The DICOM dataset of ``data`` without its pixels (None when unreadable)."""
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except Exception:  # the prediction's own decode has said what is wrong, if anything
        return None


def patient_identity(dataset: Any) -> dict[str, str]:
    """The identity fields of :data:`IDENTITY_FIELDS`, as text; "" when absent.

    Read without pydicom's value validation, which would log an invalid value verbatim.
    Dates become YYYY-MM-DD; a person name "Family^Given^Middle" becomes "FAMILY, Given
    Middle".
    """
    identity = {field: _text(dataset, keyword) for field, keyword in IDENTITY_FIELDS.items()}
    identity["name"] = _person_name(identity["name"])
    for field in ("birth_date", "study_date"):
        identity[field] = _date(identity[field])
    return identity


def display_values(data: bytes) -> DisplayValues | None:
    """The full-depth values of a DICOM's first frame, or None (colour, or undecodable)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    from pneumoscan.dicom_pixels import read_dicom_pixels

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        stored = read_dicom_pixels(dataset)
        if stored.ndim == 3 and int(dataset.get("SamplesPerPixel", 1)) == 1:
            stored = stored[0]  # multi-frame: the first frame, as the prediction reads
        if stored.ndim != 2:
            return None
        values = np.asarray(apply_modality_lut(stored, dataset), dtype=np.float64)
    except Exception as exc:
        logger.info("no full-depth view for an upload (%s)", type(exc).__name__)
        return None
    integral = bool(np.all(values == np.round(values)))
    values = _shrink(values)
    if integral:  # whole numbers stay whole: a smaller PNG, and scale 1 when they fit
        values = np.round(values)
    low, high = float(values.min()), float(values.max())
    scale = 1.0 if integral and high - low <= TOP else max(high - low, 1e-12) / TOP
    codes = np.clip(np.rint((values - low) / scale), 0, TOP).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(codes).save(buffer, format="PNG", compress_level=1)  # mode I;16
    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    return DisplayValues(buffer.getvalue(), low, scale, low, high,
                         [*window_presets(dataset), auto_window(values)],
                         photometric == "MONOCHROME1")


def auto_window(values: np.ndarray) -> dict[str, Any]:
    """The window over the 0.5th..99.5th percentiles: what the model's 8-bit rendering uses
    when the file has no window, so that a few hot pixels cannot flatten the contrast."""
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    width = max(high - low, 1.0)
    return {"name": "Auto (0.5-99.5 %)", "center": round(low + width / 2, 3),
            "width": round(width, 3)}


def window_presets(dataset: Any) -> list[dict[str, Any]]:
    """The file's windows (WindowCenter / WindowWidth, each possibly multi-valued, named by
    WindowCenterWidthExplanation), in the file's order."""
    centers, widths = _numbers(dataset, "WindowCenter"), _numbers(dataset, "WindowWidth")
    names = _text(dataset, "WindowCenterWidthExplanation").split("\\")
    presets = []
    for index, (center, width) in enumerate(zip(centers, widths, strict=False)):
        if width <= 0:
            continue
        name = names[index].strip() if index < len(names) and names[index].strip() else ""
        presets.append({"name": name or f"File window {index + 1}", "center": center,
                        "width": width})
    return presets


def _shrink(values: np.ndarray) -> np.ndarray:
    """Area-average to at most :data:`MAX_SIDE` on the longer side."""
    height, width = values.shape
    factor = max(height, width) / MAX_SIDE
    if factor <= 1:
        return values
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    image = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.float64)


def _numbers(dataset: Any, keyword: str) -> list[float]:
    numbers = []
    for part in _text(dataset, keyword).split("\\"):
        try:
            numbers.append(float(part))
        except ValueError:
            continue
    return numbers


def _text(dataset: Any, keyword: str) -> str:
    """An element's raw text, decoded with the file's character set; "" when absent."""
    from pydicom.charset import convert_encodings, decode_bytes
    from pydicom.multival import MultiValue

    element = dataset.get_item(keyword)
    value = None if element is None else element.value
    if value is None:
        return ""
    if isinstance(value, bytes):
        charsets = dataset.get("SpecificCharacterSet") or "ISO_IR 6"
        try:
            text = decode_bytes(value, convert_encodings(charsets), {0x5C, 0x5E, 0x3D})
        except Exception:
            text = value.decode("latin-1")
        return text.strip(" \x00")
    if isinstance(value, list | tuple | MultiValue):  # a multi-valued element, as stored
        return "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def _person_name(value: str) -> str:
    """DICOM PN "Family^Given^Middle^Prefix^Suffix" (first group) as "FAMILY, Given Middle"."""
    parts = [part.strip() for part in value.split("=", 1)[0].split("^")]
    family = parts[0] if parts else ""
    given = " ".join(p for p in parts[1:3] if p)
    if family and given:
        return f"{family.upper()}, {given}"
    return family or given


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() \
        else value
