"""The JSON API: predict one image or a batch, health, and the model card.

Every prediction request takes one path: it waits for one of ``max_concurrency`` inference
slots (an asyncio semaphore), so extra requests queue instead of holding decoded images in
memory all at once; its upload is read (:mod:`pneumoscan.server.uploads`), then decoded,
predicted and rendered on a worker thread (:mod:`pneumoscan.server.service`), so the event
loop keeps answering. Each upload is decoded once and preprocessed once; the PNG overlay
is drawn only when asked. Nothing about an image's content, its file name or its DICOM
tags is logged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from pneumoscan.predictor import Predictor
from pneumoscan.server.schemas import (
    ERROR_RESPONSES,
    BatchItem,
    BatchResponse,
    HealthResponse,
    ModelInfo,
    PredictionResponse,
)
from pneumoscan.server.service import UploadRejectedError, predict_bytes, predict_many
from pneumoscan.server.settings import ServerSettings
from pneumoscan.server.uploads import RAW_IMAGE_TYPES, receive_upload, too_large_detail

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")

async def get_predictor(request: Request) -> Predictor:
    """The predictor loaded at start-up (or handed to ``create_app``); 503 until then."""
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
            result = await run_in_threadpool(predict_bytes, context.predictor, received.data,
                                             heatmap, context.image)
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
    card.update(version=predictor.version, backend=_backend_name(predictor),
                scope_check=predictor.scope is not None)
    return _finite(card)  # model.json may hold NaN, which JSON cannot carry


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
