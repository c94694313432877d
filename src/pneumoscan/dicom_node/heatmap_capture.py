"""A prediction's heat map as a Secondary Capture image (highdicom), in the source's study.

The image is :func:`pneumoscan.heatmap.overlay` (the radiograph, the heat map and its
legend) under a burned-in banner: "not for diagnostic use", the label and probability, and
why the result does not apply when it does not. The Source Image Sequence points at the
radiograph it was derived from.

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


def build_heatmap_capture(source: Dataset, prediction: Prediction) -> hd.sc.SCImage:
    """The Secondary Capture of ``prediction``'s heat map over the radiograph ``source``.

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
    picture = overlay(prediction.pixels, prediction.heatmap, max_side=MAX_SIDE, legend=True)
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


def banner_lines(prediction: Prediction) -> list[tuple[str, tuple[int, int, int]]]:
    """The banner's lines and colours: the warning, the result, why it may not apply."""
    result = (f"{prediction.label}  P(pneumonia) {prediction.probability:.1%}  "
              f"(threshold {prediction.threshold:.1%})")
    lines = [(NOT_FOR_DIAGNOSIS, BANNER_WARNING), (result, BANNER_TEXT)]
    if not prediction.in_scope:
        lines.append((f"Not applicable - out of scope: {prediction.scope_reason}",
                      BANNER_WARNING))
    if prediction.population_warning:
        lines.append((prediction.population_warning, BANNER_WARNING))
    return lines


def banner(prediction: Prediction, width: int) -> np.ndarray:
    """The burned-in banner ``(h, width, 3)`` uint8 for the top of the heat-map image."""
    lines = banner_lines(prediction)
    size = max(10, width // 40)
    font = ImageFont.load_default(size=size)
    line_height = round(size * 1.4)
    picture = Image.new("RGB", (width, line_height * len(lines) + size // 2),
                        BANNER_BACKGROUND)
    draw = ImageDraw.Draw(picture)
    for index, (text, colour) in enumerate(lines):
        draw.text((size // 2, size // 4 + index * line_height), _fit(draw, text, font, width),
                  fill=colour, font=font)
    return np.asarray(picture)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont
         | ImageFont.ImageFont, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels less the margins."""
    limit = width - font.size if isinstance(font, ImageFont.FreeTypeFont) else width
    if draw.textlength(text, font=font) <= limit:
        return text
    low, high = 0, len(text)  # the longest prefix that fits with the ellipsis: bisection
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(text[:middle] + "...", font=font) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "..."
