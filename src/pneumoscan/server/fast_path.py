"""The fast path: a light single-image request answered beneath the framework.

Programs mostly call ``POST /api/v1/predict`` with the image as the body and no options.
For that request FastAPI's routing, dependency injection, exception middleware and response
validation cost about 0.7 ms on a 2-core VM, as much as decoding the image and checking its
scope together (``benchmarks/request_breakdown.py``). :class:`FastPredictPath`, an ASGI
middleware, answers it directly, through the same pieces as the route (the inference slots,
:func:`~pneumoscan.server.routes.is_light`, :func:`~pneumoscan.server.routes.predict_bytes`
and the :class:`~pneumoscan.server.schemas.PredictionResponse` model, so the JSON is the
route's to the byte), and only when the answer is a 200.

Everything else goes on to the route, with the body handed over unread: a multipart form, a
query option (``?heatmap=true``), an image over ``INLINE_MAX_PIXELS``, a DICOM, an empty,
oversized or unreadable body, a server still loading its model. So every answer but the
fast 200 comes from the route, and its errors are worded in one place.
"""

from __future__ import annotations

import time
from contextlib import suppress

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
from pneumoscan.server.uploads import is_multipart

#: The route this middleware answers for.
PREDICT_PATH = "/api/v1/predict"


class FastPredictPath:
    """Answer a light ``POST /api/v1/predict`` with a raw-body image and no options."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] != PREDICT_PATH
                or scope["method"] != "POST" or scope["query_string"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        state = scope["app"].state
        if is_multipart(request) or state.predictor is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        async with state.limiter:  # the route's inference slots: the same queue for both
            try:
                data = await request.body()  # bounded by the upload-limit middleware
            except ClientDisconnect:
                return
            result = None
            if data and len(data) <= state.settings.max_upload_bytes \
                    and is_light(data, drawing=False):
                with suppress(UploadRejectedError):  # the route words the error
                    result = predict_bytes(state.predictor, data, False, False)
        if result is None:
            await self.app(scope, _replay(data, receive), send)
            return
        result["elapsed_ms"] = elapsed_ms_since(started)
        response = PredictionResponse.model_validate(result).model_dump(mode="json")
        await JSONResponse(response)(scope, receive, send)


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
