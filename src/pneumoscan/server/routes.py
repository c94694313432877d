"""The JSON API: predict one image or a batch, health, and the model card.

Each upload is decoded once and preprocessed once; the PNG overlay is drawn only when asked.
Uploads are read, decoded and predicted inside a bounded section (an asyncio semaphore of
``max_concurrency`` slots), so extra requests wait their turn instead of holding decoded
images in memory all at once. The work runs on a worker thread, so the event loop keeps
answering, except for a light request (one JPEG or PNG of at most ``INLINE_MAX_PIXELS``,
no PNG to draw): that one is predicted on the event loop itself, because the two thread
switches of a hop would add 5-10% to its few milliseconds, while holding the loop for them
delays other requests no more than a queue would. Such a request without options is
usually answered before it gets here, with these same functions, by
:mod:`pneumoscan.server.fast_path`.
Nothing about an image's content, its file name or its DICOM tags is logged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from PIL import Image
from starlette.concurrency import run_in_threadpool

from pneumoscan.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from pneumoscan.heatmap import encode_png, overlay
from pneumoscan.imaging import JPEG_MAGIC, PNG_MAGIC, DecodedImage, header_size, is_dicom
from pneumoscan.predictor import Prediction, Predictor
from pneumoscan.server.schemas import (
    ERROR_RESPONSES,
    BatchItem,
    BatchResponse,
    HealthResponse,
    ModelInfo,
    PredictionResponse,
)
from pneumoscan.server.settings import ServerSettings
from pneumoscan.server.uploads import RAW_IMAGE_TYPES, receive_upload, too_large_detail

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

#: Largest image (pixels, from its header) predicted on the event loop rather than on a
#: worker thread: a JPEG of this size decodes and resizes in a few milliseconds.
INLINE_MAX_PIXELS = 1024 * 1024

#: Longer side of the PNGs sent back (overlay and decoded image), pixels.
PREVIEW_MAX_SIDE = 1024


class UploadRejectedError(Exception):
    """A client's file cannot be used; ``status`` is the HTTP answer it deserves."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def get_predictor(request: Request) -> Predictor:
    """The predictor loaded at start-up (tests override this dependency)."""
    predictor: Predictor | None = getattr(request.app.state, "predictor", None)
    if predictor is None:
        raise HTTPException(503, "the model is not loaded yet; retry in a few seconds")
    return predictor


async def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


@dataclass(frozen=True)
class PredictionContext:
    """What both prediction routes need: the model, the limits, the inference slots and
    the options asked for in the query string."""

    predictor: Predictor
    settings: ServerSettings
    limiter: asyncio.Semaphore
    heatmap: bool
    image: bool


async def get_context(
    request: Request,
    heatmap: bool = Query(False, description="Also return the heat-map overlay of each "
                                             "image as a PNG (or send a form field "
                                             "heatmap=true)."),
    image: bool = Query(False, description="Also return each decoded image as a PNG."),
    predictor: Predictor = Depends(get_predictor),
) -> PredictionContext:
    state = request.app.state
    return PredictionContext(predictor, state.settings, state.limiter, heatmap, image)


#: The request body ``/predict`` takes, for the OpenAPI page (the route reads the body
#: itself, see :mod:`pneumoscan.server.uploads`).
_BINARY = {"schema": {"type": "string", "format": "binary"}}
PREDICT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "A chest X-ray: JPEG, PNG or DICOM."},
            "heatmap": {"type": "boolean",
                        "description": "Same as the heatmap query parameter."}}}},
    **{content_type: _BINARY for content_type in RAW_IMAGE_TYPES}}}}
BATCH_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["files"], "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                      "description": "Up to max_batch_files X-rays."},
            "heatmap": {"type": "boolean",
                        "description": "Same as the heatmap query parameter."}}}}}}}


@router.post("/predict", response_model=PredictionResponse, responses=ERROR_RESPONSES,
             summary="Predict pneumonia on one chest X-ray", openapi_extra=PREDICT_BODY)
async def predict(request: Request,
                  context: PredictionContext = Depends(get_context)) -> dict[str, Any]:
    """Label, calibrated probability, threshold, input-scope check and, when asked, the heat
    map. Send the X-ray as multipart/form-data (field ``file``) or as the body itself.
    Decision support only, not a diagnosis."""
    started = time.perf_counter()
    settings = context.settings
    async with context.limiter:
        upload = await receive_upload(request, settings, file_field="file", max_files=1,
                                      raw_allowed=True)
        received = upload.files[0]
        if received.too_large:
            raise HTTPException(413, too_large_detail(received.size, settings.max_upload_bytes))
        heatmap = context.heatmap or bool(upload.heatmap)
        try:
            if is_light(received.data, drawing=heatmap or context.image):
                result = predict_bytes(context.predictor, received.data, heatmap, context.image)
            else:
                result = await run_in_threadpool(predict_bytes, context.predictor,
                                                 received.data, heatmap, context.image)
        except UploadRejectedError as exc:
            logger.info("rejected an upload: %d", exc.status)
            raise HTTPException(exc.status, exc.detail) from None
    result["elapsed_ms"] = elapsed_ms_since(started)
    return result


@router.post("/predict/batch", response_model=BatchResponse, responses=ERROR_RESPONSES,
             summary="Predict several chest X-rays in one request", openapi_extra=BATCH_BODY)
async def predict_batch(request: Request,
                        context: PredictionContext = Depends(get_context)) -> dict[str, Any]:
    """One result per file, in order; a bad file gets its own status and detail without
    failing the others."""
    started = time.perf_counter()
    settings = context.settings
    async with context.limiter:
        upload = await receive_upload(request, settings, file_field="files",
                                      max_files=settings.max_batch_files, raw_allowed=False)
        blobs: list[bytes | UploadRejectedError] = [
            UploadRejectedError(413, too_large_detail(f.size, settings.max_upload_bytes))
            if f.too_large else f.data for f in upload.files]
        outcomes = await run_in_threadpool(predict_many, context.predictor, blobs,
                                            context.heatmap or bool(upload.heatmap),
                                            context.image)
    items = []
    for received, outcome in zip(upload.files, outcomes, strict=True):
        if isinstance(outcome, UploadRejectedError):
            items.append(BatchItem(filename=received.filename, status=outcome.status,
                                   detail=outcome.detail))
        else:
            outcome["elapsed_ms"] = elapsed_ms_since(started)
            items.append(BatchItem(filename=received.filename, status=200,
                                   result=PredictionResponse(**outcome)))
    return {"items": items, "elapsed_ms": elapsed_ms_since(started)}


@router.get("/health", response_model=HealthResponse, summary="Is the service up?")
def health(predictor: Predictor = Depends(get_predictor),
           settings: ServerSettings = Depends(get_settings)) -> HealthResponse:
    return HealthResponse(model=predictor.version, backend=_backend_name(predictor),
                          max_upload_bytes=settings.max_upload_bytes,
                          max_batch_files=settings.max_batch_files)


@router.get("/model", response_model=ModelInfo, summary="The model card's facts")
def model_info(predictor: Predictor = Depends(get_predictor)) -> dict[str, Any]:
    card = predictor.card.to_dict()
    scope = card.pop("scope", None)
    card.update(version=predictor.version, backend=_backend_name(predictor),
                scope_check=bool(scope))
    return _finite(card)  # model.json may hold NaN, which JSON cannot carry


def is_light(data: bytes, *, drawing: bool) -> bool:
    """Whether a single-image request is cheap enough to predict on the event loop: a JPEG
    or PNG of at most INLINE_MAX_PIXELS, with no PNG to draw."""
    size = None if drawing else header_size(data)
    return size is not None and size[0] * size[1] <= INLINE_MAX_PIXELS


def predict_bytes(predictor: Predictor, data: bytes, heatmap: bool,
                  image: bool) -> dict[str, Any]:
    """Decode, predict and render one upload (on a worker thread unless it is light)."""
    decoded = decode_upload(predictor, data)
    prediction = predictor.predict_decoded([decoded], heatmap=heatmap)[0]
    return render(prediction, heatmap=heatmap, image=image)


def predict_many(predictor: Predictor, blobs: list[bytes | UploadRejectedError], heatmap: bool,
                 image: bool) -> list[dict[str, Any] | UploadRejectedError]:
    """Decode every upload, predict the good ones in one forward pass, keep the order."""
    outcomes: list[dict[str, Any] | UploadRejectedError | DecodedImage] = []
    for blob in blobs:
        try:
            outcomes.append(blob if isinstance(blob, UploadRejectedError)
                            else decode_upload(predictor, blob))
        except UploadRejectedError as exc:
            outcomes.append(exc)
    decoded = [o for o in outcomes if isinstance(o, DecodedImage)]
    predictions = iter(predictor.predict_decoded(decoded, heatmap=heatmap))
    return [render(next(predictions), heatmap=heatmap, image=image)
            if isinstance(o, DecodedImage) else o for o in outcomes]  # type: ignore[misc]


def decode_upload(predictor: Predictor, data: bytes) -> DecodedImage:
    """Decode a client's bytes, turning every failure into a 415 or 422 that says why.

    The decoders (Pillow's plugins, pydicom and its codecs) can raise many exception types
    on hostile input; none of them may become a 500.
    """
    kind = sniff_format(data)
    try:
        return predictor.decode(data)
    except ImageTooLargeError as exc:
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


def render(prediction: Prediction, *, heatmap: bool, image: bool) -> dict[str, Any]:
    """The JSON fields of one prediction; PNGs are encoded only when asked for."""
    result = prediction.to_dict()
    result.pop("heatmap", None)
    if heatmap and prediction.heatmap is not None and prediction.pixels is not None:
        result["heatmap_png"] = _base64_png(overlay(prediction.pixels, prediction.heatmap,
                                                    max_side=PREVIEW_MAX_SIDE))
    if image and prediction.pixels is not None:
        result["image_png"] = _base64_png(_shrink(prediction.pixels, PREVIEW_MAX_SIDE))
    return result


def _shrink(pixels: np.ndarray, max_side: int) -> np.ndarray:
    height, width = pixels.shape
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def _base64_png(pixels: np.ndarray) -> str:
    return base64.b64encode(encode_png(pixels)).decode("ascii")


def _clean(exc: Exception) -> str:
    """The decoder's message without the placeholder name it gives raw bytes."""
    return str(exc).removeprefix("<bytes>: ")


def elapsed_ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 1)


def _backend_name(predictor: Predictor) -> str:
    return str(getattr(predictor.backend, "name", "unknown"))


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
