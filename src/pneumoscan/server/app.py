"""``create_app(settings)``: the FastAPI application behind ``pneumoscan serve``.

The model is loaded once, in the lifespan handler, never at import, or handed over already
loaded: ``create_app(settings, predictor=...)`` (a notebook's model, or the route tests'
fake). Either way every request takes the same path, through the routes.

The API documentation is served offline from fastapi-offline's files: Swagger UI at /docs
and ReDoc at /redoc, both able to read FastAPI's OpenAPI 3.1 document. Neither loads
anything from another site: ReDoc's bundle is served without the CDN address of its logo,
and both pages carry a content security policy that would stop any other.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pneumoscan import DISCLAIMER, __version__
from pneumoscan.memory import limit_malloc_arenas
from pneumoscan.monitoring import CONTENT_TYPE, ServiceMetrics, expected_positive_share
from pneumoscan.predictor import Predictor
from pneumoscan.server.protection import (
    CrossOriginGuard,
    InferenceSlots,
    SecurityHeadersMiddleware,
)
from pneumoscan.server.routes import router
from pneumoscan.server.settings import ServerSettings
from pneumoscan.server.uploads import too_large_detail

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: Where the Swagger UI and ReDoc scripts are served from (fastapi-offline's files).
DOCS_ASSETS_URL = "/docs-assets"

#: The upload page loads nothing from elsewhere; images arrive as data: URLs or blobs.
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
#: /docs and /redoc load their scripts from this server (fastapi-offline's files); the
#: policy keeps what those scripts would fetch from elsewhere in the browser, such as the
#: Redocly logo ReDoc's menu asks a CDN for. Swagger UI starts from an inline script and
#: ReDoc styles itself inline and searches in a blob: worker.
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; font-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'")
DOCS_PATHS = frozenset({"/docs", "/redoc"})
#: ReDoc's script as served here: fastapi-offline's copy, less the one address in it that
#: the page would fetch from the internet (the Redocly logo in its menu, from a CDN).
REDOC_SCRIPT_URL = "/redoc-assets/redoc.standalone.js"
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def create_app(settings: ServerSettings | None = None, *,
               predictor: Predictor | None = None) -> FastAPI:
    """Build the application. The model named in ``settings`` is loaded at start-up, unless
    a loaded ``predictor`` is given (to serve a model already in memory)."""
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.predictor = (predictor if predictor is not None
                               else await run_in_threadpool(load_predictor, settings))
        # Created on the serving loop (a semaphore binds to the loop that first waits on it).
        app.state.limiter = InferenceSlots(settings.max_concurrency)
        app.state.metrics = service_metrics(app.state.predictor)
        yield
        app.state.predictor = None

    app = FastAPIOffline(  # a FastAPI app whose /docs and /redoc load nothing from a CDN
        title="pneumoscan",
        version=__version__,
        summary="Pneumonia detection on chest X-rays.",
        description=f"**{DISCLAIMER}**",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,  # served by _add_redoc, from a script that fetches no logo
        static_url=DOCS_ASSETS_URL,
    )
    app.state.settings = settings
    app.state.predictor = None
    app.state.limiter = InferenceSlots(settings.max_concurrency)
    app.state.metrics = None
    app.include_router(router)
    _add_pages(app)
    _add_metrics(app)
    _add_redoc(app)
    _add_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(UploadLimitMiddleware, settings=settings)
    app.add_middleware(DocsPolicyMiddleware)
    # Outermost last: headers on every answer (the 403 and 413 too), and a foreign page's
    # post refused before anything reads its body.
    app.add_middleware(CrossOriginGuard, allowed_origins=settings.cors_origins)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def create_app_from_environment() -> FastAPI:
    """Factory for uvicorn (``--factory``), in each server process: settings from
    ``PNEUMOSCAN_*`` variables; the C heap's arenas limited (:mod:`pneumoscan.memory`)."""
    limit_malloc_arenas()
    return create_app(ServerSettings())


def load_predictor(settings: ServerSettings) -> Predictor:
    started = time.perf_counter()
    predictor = Predictor.load(settings.model, backend=settings.backend,
                               max_pixels=settings.max_pixels)
    logger.info("model %s loaded (%s backend) in %.1f s", predictor.version,
                getattr(predictor.backend, "name", "?"), time.perf_counter() - started)
    return predictor


def service_metrics(predictor: Predictor) -> ServiceMetrics:
    """The web service's metrics (:mod:`pneumoscan.monitoring`) for the model it serves."""
    return ServiceMetrics("web", predictor.version,
                          str(getattr(predictor.backend, "name", "unknown")),
                          expected_positive_share(predictor.card))


def _add_metrics(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus text format; 503 until the model is loaded."""
        current: ServiceMetrics | None = app.state.metrics
        if current is None:
            return Response("the model is not loaded yet\n", 503, media_type="text/plain")
        return Response(current.exposition(), media_type=CONTENT_TYPE)


def _add_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # HEAD as well as GET: uptime monitors ask with HEAD (FastAPI adds no HEAD by itself).
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={
            "Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache"})


def _add_redoc(app: FastAPI) -> None:
    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url or "/openapi.json",
                              title=f"{app.title} - ReDoc", redoc_js_url=REDOC_SCRIPT_URL,
                              redoc_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
                              with_google_fonts=False)

    @app.get(REDOC_SCRIPT_URL, include_in_schema=False)
    def redoc_script() -> Response:
        return Response(offline_redoc_script(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


@functools.cache
def offline_redoc_script() -> bytes:
    """fastapi-offline's ReDoc bundle with the CDN logo replaced by an empty ``data:`` image
    (ReDoc hides an image that does not load)."""
    import fastapi_offline

    script = (Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js")
    return script.read_bytes().replace(REDOC_CDN_LOGO.encode(), b"data:,")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_validation_errors(exc.errors())}, 422)

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> Response:
        # Not a server fault: one line, no traceback. Nobody is left to read the answer.
        logger.info("client disconnected before sending its whole request (%s %s)",
                    request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected %s on %s %s", type(exc).__name__, request.method,
                     request.url.path, exc_info=exc)
        return JSONResponse({"detail": "the server failed on this request; it has been "
                                       "logged and the service keeps running"}, 500)


def describe_validation_errors(errors: Any) -> str:
    """One readable sentence from pydantic's error list (no input values echoed back)."""
    parts = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        field = location[-1] if location else "request"
        if error.get("type") == "missing" and field in ("file", "files"):
            parts.append(f"no file received: send the X-ray as multipart/form-data in a "
                         f"field named '{field}'")
        else:
            parts.append(f"{'.'.join(location) or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is malformed"


class UploadLimitMiddleware:
    """Refuse request bodies over the upload limit with 413, before reading them whole.

    The declared ``Content-Length`` is checked first; the bytes actually received are
    counted too, for chunked uploads that declare no length.
    """

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        files = self.settings.max_batch_files if scope["path"].endswith("/batch") else 1
        limit = self.settings.body_limit(files)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = JSONResponse({"detail": too_large_detail(
                int(declared), self.settings.max_upload_bytes)}, 413)
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large_detail(
                        None, self.settings.max_upload_bytes))
            return message

        await self.app(scope, counted_receive, send)


class DocsPolicyMiddleware:
    """Add :data:`DOCS_CSP` to the /docs and /redoc pages: nothing they run may load
    anything from another site."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOCS_PATHS:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"content-security-policy", DOCS_CSP.encode())]
            await send(message)

        await self.app(scope, receive, send_with_policy)
