"""``pneumoscan serve``: the upload page and the JSON API with uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from pneumoscan.cli.console import configure_logging, console, user_errors
from pneumoscan.extras import require


def serve_command(
    host: str | None = typer.Option(None, "--host", help="Address to bind (default "
                                    "127.0.0.1: this machine only; env PNEUMOSCAN_HOST)."),
    port: int | None = typer.Option(None, "--port", help="TCP port (default 8000; env "
                                    "PNEUMOSCAN_PORT)."),
    model: Path | None = typer.Option(None, "--model", help="Model folder or .safetensors "
                                      "file (default: the shipped model; env PNEUMOSCAN_MODEL)."),
    backend: str | None = typer.Option(None, "--backend", help="Inference engine: auto, "
                                       "onnx or torch (env PNEUMOSCAN_BACKEND)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Server processes, "
                                       "each holding the model (default 1; env "
                                       "PNEUMOSCAN_WORKERS)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve the upload page and the JSON API.

    The page at http://HOST:PORT, the JSON API under /api/v1."""
    configure_logging(verbose)
    import uvicorn

    from pneumoscan.server.settings import ServerSettings

    options: dict[str, Any] = {"host": host, "port": port, "model": model, "backend": backend,
               "workers": workers}
    with user_errors():
        settings = ServerSettings(**{k: v for k, v in options.items() if v is not None})
        if settings.backend == "torch":  # fail here, not in every worker's start-up
            require("--backend torch", ("torch",), "torch")
        # The app is built by a factory in each worker process: pass the options on to it
        # as the same environment variables a deployment would set.
        for name, value in settings.model_dump(exclude_unset=True).items():
            os.environ[f"PNEUMOSCAN_{name.upper()}"] = str(value)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] binding {settings.host}: the service has no "
                      "authentication; put it behind an authenticating proxy")
    console.print(f"pneumoscan: http://{settings.host}:{settings.port}  (API docs at /docs)")
    # One process logs through the CLI's handler; worker processes use uvicorn's own set-up.
    log_config = None if settings.workers == 1 else uvicorn.config.LOGGING_CONFIG
    uvicorn.run("pneumoscan.server.app:create_app_from_environment", factory=True,
                host=settings.host, port=settings.port, workers=settings.workers,
                log_level=settings.log_level, log_config=log_config)
