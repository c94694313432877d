"""What the prediction routes do with an upload: decode it, predict, render the JSON fields.

Plain functions of a :class:`~pneumoscan.predictor.Predictor` and bytes, run on a worker
thread by :mod:`pneumoscan.server.routes`. Every failure a client's file can cause becomes
an :class:`UploadRejectedError` carrying the HTTP status it deserves (415 or 422) and a
sentence saying why; nothing about an image's content is logged.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from pneumoscan.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from pneumoscan.heatmap import encode_png, heat_layer, overlay, shrink_to_fit
from pneumoscan.imaging import JPEG_MAGIC, PNG_MAGIC, DecodedImage, is_dicom
from pneumoscan.memory import LARGE_IMAGE_PIXELS, release_free_memory
from pneumoscan.predictor import Prediction, Predictor
from pneumoscan.server.dicom_view import display_values, patient_identity, read_header

logger = logging.getLogger(__name__)

#: Longer side of the PNGs sent back (overlay and decoded image), pixels.
PREVIEW_MAX_SIDE = 1024
#: Longer side of the heat-map layer: the map is smooth, the browser scales it up.
LAYER_MAX_SIDE = 256


class UploadRejectedError(Exception):
    """A client's file cannot be used; ``status`` is the HTTP answer it deserves."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


#: Hears every prediction made (the service's metrics count it).
Observer = Callable[[Prediction], None]


def predict_bytes(predictor: Predictor, data: bytes, heatmap: bool,
                  image: bool, observe: Observer | None = None) -> dict[str, Any]:
    """Decode, predict and render one upload."""
    decoded = decode_upload(predictor, data)
    try:
        prediction = predictor.predict_decoded([decoded], heatmap=heatmap)[0]
        if observe is not None:
            observe(prediction)
        return render(prediction, heatmap=heatmap, image=image, study=study_facts(decoded),
                      **dicom_view_fields(data, decoded, image))
    finally:
        _release_after([decoded])


def predict_many(predictor: Predictor, blobs: list[bytes | UploadRejectedError], heatmap: bool,
                 image: bool, observe: Observer | None = None,
                 ) -> list[dict[str, Any] | UploadRejectedError]:
    """Decode every upload, predict the good ones in one forward pass, keep the order."""
    outcomes: list[dict[str, Any] | UploadRejectedError | DecodedImage] = []
    for blob in blobs:
        try:
            outcomes.append(blob if isinstance(blob, UploadRejectedError)
                            else decode_upload(predictor, blob))
        except UploadRejectedError as exc:
            outcomes.append(exc)
    decoded = [o for o in outcomes if isinstance(o, DecodedImage)]
    try:
        made = predictor.predict_decoded(decoded, heatmap=heatmap)
        if observe is not None:
            for prediction in made:
                observe(prediction)
        predictions = iter(made)
        return [render(next(predictions), heatmap=heatmap, image=image, study=study_facts(o),
                       **dicom_view_fields(blob, o, image))  # type: ignore[arg-type]
                if isinstance(o, DecodedImage) else o
                for blob, o in zip(blobs, outcomes, strict=True)]  # type: ignore[misc]
    finally:
        _release_after(decoded)


def _release_after(images: list[DecodedImage]) -> None:
    """After a large image, give the freed memory back (see :mod:`pneumoscan.memory`)."""
    if any(image.pixels.size >= LARGE_IMAGE_PIXELS for image in images):
        release_free_memory()


def decode_upload(predictor: Predictor, data: bytes) -> DecodedImage:
    """Decode a client's bytes, turning every failure into a 415 or 422 that says why.

    The decoders (Pillow's plugins, pydicom and its codecs) can raise many exception types
    on hostile input; none of them may become a 500.
    """
    kind = sniff_format(data)
    try:
        return predictor.decode(data)
    except ImageTooLargeError as exc:
        release_free_memory()  # a refused bomb may have inflated up to the limit first
        raise UploadRejectedError(422, _clean(exc)) from None
    except UnsupportedImageError as exc:
        if isinstance(exc.__cause__, Image.DecompressionBombError):
            raise UploadRejectedError(422, "the image has far too many pixels to decode safely; "
                                      "downscale it first") from None
        if kind is not None:  # the right magic bytes, but unreadable beyond them
            raise UploadRejectedError(422, f"the file starts like a {kind} but cannot be read: it "
                                      "is truncated or corrupt") from None
        raise UploadRejectedError(415, "not a supported file: send a chest X-ray as JPEG, PNG or "
                                  "DICOM") from None
    except ImageDecodeError as exc:
        raise UploadRejectedError(422, _clean(exc)) from None
    except Exception as exc:
        logger.warning("decoder raised %s on an upload", type(exc).__name__)
        if kind is None:
            raise UploadRejectedError(415, "not a supported file: send a chest X-ray as JPEG, PNG "
                                      "or DICOM") from None
        raise UploadRejectedError(422, f"the {kind} file cannot be decoded: it is truncated or "
                                  "corrupt") from None


def sniff_format(data: bytes) -> str | None:
    """The accepted format the bytes claim by their magic numbers, if any."""
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if is_dicom(data):
        return "DICOM"
    return None


def render(prediction: Prediction, *, heatmap: bool, image: bool,
           study: dict[str, str] | None = None, identity: dict[str, str] | None = None,
           display: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON fields of one prediction (``Prediction.to_dict``); PNGs are encoded only when
    asked for. A heat map asked for on a result that does not apply comes greyed
    (``heatmap_style``, decided by :mod:`pneumoscan.result_meaning`)."""
    result = prediction.to_dict()
    result["study"] = study
    result["identity"] = identity
    result["display"] = display
    if heatmap and prediction.heatmap is not None and prediction.pixels is not None:
        greyed = prediction.meaning.heatmap_greyed
        result["heatmap_png"] = _base64_png(overlay(prediction.pixels, prediction.heatmap,
                                                    max_side=PREVIEW_MAX_SIDE, greyed=greyed))
        height, width = prediction.pixels.shape
        scale = min(1.0, LAYER_MAX_SIDE / max(height, width))
        result["heatmap_layer_png"] = _base64_png(heat_layer(
            prediction.heatmap, (max(1, round(width * scale)), max(1, round(height * scale))),
            greyed=greyed))
    if image and prediction.pixels is not None:
        result["image_png"] = _base64_png(_shrink(prediction.pixels, PREVIEW_MAX_SIDE))
    return result


def study_facts(decoded: DecodedImage) -> dict[str, str] | None:
    """The DICOM header facts that tell a reader the right study was loaded (modality, body
    part, view, study date as YYYY-MM-DD); None for a JPEG or PNG. No patient identity, and
    they go into the response only, never into a log."""
    info = decoded.dicom
    if info is None:
        return None
    date = info.study_date
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return {"modality": info.modality, "body_part": info.body_part,
            "view": info.view_position, "study_date": date}


def dicom_view_fields(data: bytes, decoded: DecodedImage,
                      image: bool) -> dict[str, Any]:
    """A DICOM upload's patient identity, and (``image``) its full-depth values
    (:mod:`pneumoscan.server.dicom_view`); nothing for a JPEG or PNG. For the response
    only: never logged."""
    if decoded.dicom is None:
        return {}
    header = read_header(data)
    display = display_values(data) if image else None
    return {"identity": None if header is None else patient_identity(header),
            "display": None if display is None else display.to_dict()}


def _shrink(pixels: np.ndarray, max_side: int) -> np.ndarray:
    if max(pixels.shape) <= max_side:
        return pixels
    return np.asarray(shrink_to_fit(Image.fromarray(pixels), max_side))


def _base64_png(pixels: np.ndarray) -> str:
    return base64.b64encode(encode_png(pixels)).decode("ascii")


def _clean(exc: Exception) -> str:
    """The decoder's message without the placeholder name it gives raw bytes."""
    return str(exc).removeprefix("<bytes>: ")
