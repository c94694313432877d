"""What the node accepts, and the C-STORE status of what it refuses.

Accepted: CR, DX (for presentation and for processing) and Secondary Capture images, in
every transfer syntax pydicom can decode here (uncompressed, JPEG, JPEG-LS, JPEG 2000,
RLE...). Other SOP classes and syntaxes are refused at association negotiation, which lets
a PACS such as Orthanc transcode to one we accept. What arrives is then checked in the
order of :func:`check_received`; each refusal carries its C-STORE status.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder

from pneumoscan.dicom_node.result_identity import SourceDatasetError, check_source
from pneumoscan.errors import ImageDecodeError, ImageTooLargeError, ImageTooSmallError
from pneumoscan.imaging import DecodedImage
from pneumoscan.scope import check_dicom_header

#: Image storage SOP classes a chest radiograph arrives as.
ACCEPTED_SOP_CLASSES = (
    uid.ComputedRadiographyImageStorage,
    uid.DigitalXRayImageStorageForPresentation,
    uid.DigitalXRayImageStorageForProcessing,
    uid.SecondaryCaptureImageStorage,
)
UNCOMPRESSED = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian,
                uid.DeflatedExplicitVRLittleEndian, uid.ExplicitVRBigEndian)
COMPRESSED = (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless,
              uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEGLSNearLossless,
              uid.JPEG2000Lossless, uid.JPEG2000, uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL,
              uid.HTJ2K, uid.RLELossless)

#: C-STORE statuses (PS3.4 Annex B.2.3; 0xC000-0xCFFF "cannot understand" is ours to detail).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # image over the pixel limit
DOES_NOT_MATCH_SOP_CLASS = 0xA900  # an image without pixels, or without its UIDs
CANNOT_DECODE = 0xC100  # pixel data present but undecodable
PROCESSING_FAILED = 0xC101  # an unexpected error in the node (logged)
TOO_SMALL = 0xC102  # too few pixels to be a radiograph


def accepted_transfer_syntaxes() -> list[str]:
    """Uncompressed syntaxes, and the compressed ones whose decoder is installed."""
    return [*UNCOMPRESSED, *(s for s in COMPRESSED if get_decoder(s).is_available)]


@dataclass(frozen=True)
class Refusal:
    """Why a received dataset gets no prediction: its C-STORE status and a log line (no
    patient data: reasons name header codes and sizes only)."""

    status: int
    reason: str


def check_received(dataset: Dataset) -> Refusal | None:
    """Checks on the header alone: pixel data present, UIDs to file a result under."""
    if "PixelData" not in dataset:
        return Refusal(DOES_NOT_MATCH_SOP_CLASS, "the dataset holds no pixel data")
    try:
        check_source(dataset)
    except SourceDatasetError as exc:
        return Refusal(DOES_NOT_MATCH_SOP_CLASS, str(exc))
    return None


def refusal_for_decode_error(exc: Exception) -> Refusal:
    """The status of a decoding failure (messages of imaging.decode_image name no data)."""
    if isinstance(exc, ImageTooLargeError):
        return Refusal(OUT_OF_RESOURCES, "the image is over the pixel limit")
    if isinstance(exc, ImageTooSmallError):
        return Refusal(TOO_SMALL, "the image is too small to be a radiograph")
    if isinstance(exc, ImageDecodeError):
        return Refusal(CANNOT_DECODE, "the pixel data cannot be decoded")
    return Refusal(PROCESSING_FAILED, f"unexpected {exc.__class__.__name__} while decoding")


def out_of_scope_reason(decoded: DecodedImage) -> str:
    """Why the header says the image is not for this model (lateral, not a chest, not a
    radiograph): such images are stored with success and get no result. "" otherwise."""
    verdict = check_dicom_header(decoded)
    return "" if verdict.in_scope else verdict.reason
