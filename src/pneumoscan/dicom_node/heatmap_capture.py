"""A prediction's heat map as a Secondary Capture image (highdicom), in the source's study.

The image is :func:`pneumoscan.heatmap.overlay` (the radiograph, the heat map and its
legend) under a burned-in banner: "not for diagnostic use", then the finding and its
probability. For a result that does not apply (``prediction.meaning``,
:mod:`pneumoscan.result_meaning`) the banner starts with "NOT APPLICABLE" and the reasons,
whole (wrapped, never cut), the model's output only greyed and named "not a finding", and
the heat map is withheld: nobody asked for it, and a coloured map would read as a finding.
The Source Image Sequence points at the radiograph it was derived from.

It is made as JPEG baseline (highdicom encodes it with Pillow at quality 95: a tenth of the
uncompressed size); :mod:`pneumoscan.dicom_node.sender` re-encodes it as JPEG-LS lossless
or uncompressed for a destination that does not accept JPEG baseline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.uid import JPEGBaseline8Bit

from pneumoscan.dicom_node import codes
from pneumoscan.dicom_node.result_identity import (
    MANUFACTURER,
    NOT_FOR_DIAGNOSIS,
    SC_SERIES_DESCRIPTION,
    SC_SERIES_NUMBER,
    evidence_header,
    instance_number,
    result_uids,
)
from pneumoscan.heatmap import overlay
from pneumoscan.result_meaning import HEATMAP_WITHHELD

if TYPE_CHECKING:
    from pneumoscan.predictor import Prediction

#: Row and column directions of a frontal chest film as conventionally displayed; used
#: when the source does not say (the overlay keeps the source's orientation).
DEFAULT_PATIENT_ORIENTATION = ("L", "F")
#: Longest side of the overlay, pixels (the banner and legend are added to it).
MAX_SIDE = 1024
BANNER_BACKGROUND = (0, 0, 0)
BANNER_WARNING = (255, 210, 0)  # amber: the "not for diagnostic use" line and warnings
BANNER_TEXT = (255, 255, 255)
BANNER_MUTED = (170, 170, 170)  # the model output of a result that does not apply


def build_heatmap_capture(source: Dataset, prediction: Prediction) -> hd.sc.SCImage:
    """The Secondary Capture of ``prediction``'s heat map over the radiograph ``source``
    (the radiograph alone when the result does not apply).

    Raises:
        ValueError: the prediction has no heat map or pixels (predict with
            ``heatmap=True``).
        SourceDatasetError: ``source`` lacks its study, series or instance UIDs.
    """
    if prediction.heatmap is None or prediction.pixels is None:
        raise ValueError("the prediction carries no heat map or pixels: predict with "
                         "heatmap=True")
    source = evidence_header(source)
    uids = result_uids(source, prediction.model)
    if prediction.meaning.applicable:
        picture = overlay(prediction.pixels, prediction.heatmap, max_side=MAX_SIDE,
                          legend=True)
    else:
        picture = _radiograph(prediction.pixels)
    rgb = np.concatenate([banner(prediction, picture.shape[1]), picture])  # (H, W, 3)
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=rgb, photometric_interpretation="YBR_FULL_422",
        bits_allocated=8, coordinate_system="PATIENT",
        series_instance_uid=uids.sc_series, series_number=SC_SERIES_NUMBER,
        sop_instance_uid=uids.sc_instance, instance_number=instance_number(source),
        manufacturer=MANUFACTURER, patient_orientation=_orientation(source),
        transfer_syntax_uid=JPEGBaseline8Bit,
        series_description=SC_SERIES_DESCRIPTION, software_versions=prediction.model[:64],
    )
    # General Series, Type 2C (validators require it present): the source's side, else empty.
    image.Laterality = _laterality(source)
    # Encapsulated pixel data has an undefined length. pydicom's dcmwrite sets this itself,
    # but a C-STORE encodes the dataset directly, and DCMTK (Orthanc) refuses it otherwise.
    image["PixelData"].is_undefined_length = True
    image.BurnedInAnnotation = "YES"
    image.LossyImageCompression = "01"
    image.LossyImageCompressionMethod = "ISO_10918_1"
    image.LossyImageCompressionRatio = f"{rgb.nbytes / len(image.PixelData):.1f}"[:16]
    image.ImageComments = NOT_FOR_DIAGNOSIS
    image.DerivationDescription = (f"Heat map of the evidence for pneumonia ({MANUFACTURER} "
                                   f"{prediction.model}) over the source radiograph")[:1024]
    image.DerivationCodeSequence = [hd.sr.CodedConcept.from_code(codes.HEATMAP_DERIVATION)]
    image.SourceImageSequence = [_source_reference(source)]
    return image


def _source_reference(source: Dataset) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    reference.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept.from_code(
        dicom_codes.DCM.SourceImageForImageProcessingOperation)]
    return reference


def _laterality(source: Dataset) -> str:
    """The source's Laterality or Image Laterality when it is R or L; "" otherwise (a chest
    is not a paired structure: most sources leave it empty)."""
    for keyword in ("Laterality", "ImageLaterality"):
        value = str(source.get(keyword, "") or "").strip().upper()
        if value in ("R", "L"):
            return value
    return ""


def _orientation(source: Dataset) -> tuple[str, str]:
    """The source's Patient Orientation when it is a valid pair, else the default."""
    value = source.get("PatientOrientation")
    try:
        row, column = (str(v) for v in value)  # type: ignore[union-attr]
        hd.PatientOrientationValuesBiped(row)
        hd.PatientOrientationValuesBiped(column)
    except (TypeError, ValueError):
        return DEFAULT_PATIENT_ORIENTATION
    return row, column


def _radiograph(pixels: np.ndarray) -> np.ndarray:
    """The radiograph ``(H, W)`` as RGB, its longer side at most :data:`MAX_SIDE`."""
    height, width = pixels.shape
    scale = min(1.0, MAX_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)
                      .convert("RGB"))


def banner_lines(prediction: Prediction) -> list[tuple[str, tuple[int, int, int]]]:
    """The banner's lines and colours, from ``prediction.meaning``: NOT APPLICABLE and why
    first when the result does not apply; the warning; the finding or the greyed output."""
    meaning = prediction.meaning
    finding = meaning.finding
    if finding is not None:
        return [(NOT_FOR_DIAGNOSIS, BANNER_WARNING),
                (f"{finding.label}  P(pneumonia) {finding.probability:.1%}  "
                 f"(threshold {finding.threshold:.1%})", BANNER_TEXT)]
    lines = [(meaning.not_applicable_headline, BANNER_WARNING),
             (NOT_FOR_DIAGNOSIS, BANNER_WARNING),
             *((reason, BANNER_WARNING) for reason in meaning.reasons)]
    if meaning.model_output_note:
        lines.append((meaning.model_output_note, BANNER_MUTED))
    lines.append((HEATMAP_WITHHELD, BANNER_MUTED))
    return lines


def banner(prediction: Prediction, width: int) -> np.ndarray:
    """The burned-in banner ``(h, width, 3)`` uint8 for the top of the heat-map image;
    a line too long for the width is wrapped, never cut."""
    size = max(10, width // 40)
    font = ImageFont.load_default(size=size)
    rows = [(row, colour) for text, colour in banner_lines(prediction)
            for row in _wrap(text, font, width - size)]
    line_height = round(size * 1.4)
    picture = Image.new("RGB", (width, line_height * len(rows) + size // 2),
                        BANNER_BACKGROUND)
    draw = ImageDraw.Draw(picture)
    for index, (text, colour) in enumerate(rows):
        draw.text((size // 2, size // 4 + index * line_height), text, fill=colour, font=font)
    return np.asarray(picture)


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
          limit: int) -> list[str]:
    """``text`` in lines of at most ``limit`` pixels, broken between words (inside a word
    only when one alone is wider). Each word is measured once and a line's width is the
    sum of its words and spaces (measuring every candidate line whole was half the
    banner's time); the banner's margin, half a character, takes any kerning at a space."""
    space = font.getlength(" ")
    rows: list[str] = []
    row, used = "", 0.0
    for word in text.split():
        width = font.getlength(word)
        extended = used + space + width if row else width
        if extended <= limit:
            row, used = f"{row} {word}" if row else word, extended
            continue
        if row:
            rows.append(row)
        while width > limit and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and font.getlength(word[:cut]) > limit:
                cut -= 1
            rows.append(word[:cut])
            word = word[cut:]
            width = font.getlength(word)
        row, used = word, width
    if row or not rows:
        rows.append(row)
    return rows
