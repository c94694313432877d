"""The fast path: a light single-image request answered beneath the framework.

Programs and ``curl`` mostly call ``POST /api/v1/predict`` with one small image (as the
body, or as a form's ``file`` part) and no options. For that request FastAPI's routing,
dependency injection, exception middleware and response validation cost about 0.5 ms on a
2-core VM, more than decoding the image (``benchmarks/request_breakdown.py``).
:class:`FastPredictPath`, an ASGI middleware, answers it directly, through the same pieces
as the route (the inference slots, :func:`~pneumoscan.server.uploads.receive_upload`,
:func:`~pneumoscan.server.routes.is_light`, :func:`~pneumoscan.server.routes.predict_bytes`
and the :class:`~pneumoscan.server.schemas.PredictionResponse` model, so the JSON is the
route's), and only when the answer is a 200.

Everything else goes on to the route, with the body handed over as it came: a query option
(``?heatmap=true``) or a form's ``heatmap`` field, an image over ``INLINE_MAX_PIXELS``, a
DICOM, a malformed form, an empty, oversized or unreadable file, a server still loading
its model. So every answer but the fast 200 comes from the route, and its errors are
worded in one place.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pneumoscan.server.routes import (
    UploadRejectedError,
    elapsed_ms_since,
    is_light,
    predict_bytes,
)
from pneumoscan.server.schemas import PredictionResponse
from pneumoscan.server.uploads import receive_upload

#: The route this middleware answers for.
PREDICT_PATH = "/api/v1/predict"


class FastPredictPath:
    """Answer a light single-image ``POST /api/v1/predict`` that asks for no options."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state if scope["type"] == "http" else None
        if (state is None or state.predictor is None or scope["path"] != PREDICT_PATH
                or scope["method"] != "POST" or scope["query_string"]):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope, receive)
        async with state.limiter:  # the route's inference slots: the same queue for both
            try:
                body = await request.body()  # bounded by the upload-limit middleware
            except ClientDisconnect:
                return
            result = await _predict_light(request, state)
        if result is None:
            await self.app(scope, _replay(body, receive), send)
            return
        result["elapsed_ms"] = elapsed_ms_since(started)
        response = PredictionResponse.model_validate(result).model_dump(mode="json")
        await JSONResponse(response)(scope, receive, send)


async def _predict_light(request: Request, state: Any) -> dict[str, Any] | None:
    """The route's answer to ``request`` (its body read already) when that is a 200 for a
    light image with nothing to draw; None for anything else."""
    try:  # the route's own parsing: a form's file part, or the body itself
        upload = await receive_upload(request, state.settings, file_field="file",
                                      max_files=1, raw_allowed=True)
    except HTTPException:
        return None
    received = upload.files[0]
    if upload.heatmap or received.too_large or not is_light(received.data, drawing=False):
        return None
    try:
        return predict_bytes(state.predictor, received.data, False, False)
    except UploadRejectedError:
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` (already read) first, then defers to ``receive``."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
