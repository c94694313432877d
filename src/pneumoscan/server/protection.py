"""What protects the service from the pages and clients it did not make.

- :class:`SecurityHeadersMiddleware`: ``nosniff``, a Content-Security-Policy with
  ``frame-ancestors 'none'`` and a referrer policy on every response (the page, /docs,
  /redoc, /static and the API), not on ``/`` alone.
- :class:`CrossOriginGuard`: a POST that a browser made for another site's page (a
  ``no-cors`` fetch of a form needs no CORS permission to be *sent*) is refused with 403
  before its body is read. Programs (curl, httpx) send neither ``Origin`` nor
  ``Sec-Fetch-Site`` and are not affected; origins in ``cors_origins`` stay allowed.
- :class:`InferenceSlots`: the inference slots, and how long the oldest prediction has
  held one, so that /health can say when the service is stuck.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The API's answers are JSON: they load nothing and may not be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: Swagger UI (/docs) starts itself with an inline script and ReDoc runs a blob: worker;
#: everything else they load comes from this server (fastapi-offline's files).
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; "
            "frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response; a route's own
    Content-Security-Policy (the upload page's) is kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        policy = DOCS_CSP if path.startswith(DOCS_PATHS) else API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", policy)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CrossOriginGuard:
    """Refuses (403) a state-changing request that a browser sent for a page of another
    origin, unless that origin is in ``allowed_origins``."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS \
                and self.is_foreign(Headers(scope=scope)):
            response = JSONResponse({"detail": "cross-origin requests are refused: post from "
                                     "this server's own page, or from a program"}, 403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def is_foreign(self, headers: Headers) -> bool:
        """Whether a browser made this request for a page of another origin."""
        origin = headers.get("origin")
        if origin is not None:
            origin = origin.rstrip("/").lower()
            if origin in self.allowed:
                return False
            # The page's origin against the host it posted to ("null": a sandboxed frame
            # or a file:// page, never this server's page).
            return origin == "null" or urlsplit(origin).netloc != \
                headers.get("host", "").lower()
        # No Origin (older browsers on some requests): the fetch metadata still tells.
        return headers.get("sec-fetch-site", "same-origin").lower() not in (
            "same-origin", "none")


class InferenceSlots:
    """``max_concurrency`` slots for decoding and predicting, and the start time of each
    prediction holding one (for :meth:`longest_held_s`)."""

    def __init__(self, max_concurrency: int) -> None:
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._started: dict[int, float] = {}
        self._numbers = itertools.count()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._semaphore:
            number = next(self._numbers)
            self._started[number] = time.monotonic()
            try:
                yield
            finally:
                del self._started[number]

    @property
    def running(self) -> int:
        return len(self._started)

    def longest_held_s(self) -> float:
        """Seconds the oldest running prediction has held its slot (0 when none runs)."""
        if not self._started:
            return 0.0
        return time.monotonic() - min(self._started.values())
