"""Server settings: command-line options or ``PNEUMOSCAN_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pneumoscan.imaging import DEFAULT_MAX_PIXELS

MEGABYTE = 1024 * 1024


class ServerSettings(BaseSettings):
    """Everything ``pneumoscan serve`` can be told; each field reads ``PNEUMOSCAN_<NAME>``.

    Example: ``PNEUMOSCAN_PORT=9000 PNEUMOSCAN_MAX_CONCURRENCY=4 pneumoscan serve``.
    """

    model_config = SettingsConfigDict(env_prefix="PNEUMOSCAN_", extra="ignore")

    host: str = "127.0.0.1"  # loopback only unless asked: the service has no authentication
    port: int = Field(default=8000, ge=0, le=65535)
    model: Path | None = None  # model folder or .safetensors file; None = the shipped model
    backend: Literal["auto", "torch", "onnx"] = "auto"  # inference engine
    workers: int = Field(default=1, ge=1)  # uvicorn processes, each with its own copy of the model
    max_upload_bytes: int = Field(default=25 * MEGABYTE, ge=1)  # per file; larger uploads get 413
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)  # decoded H*W; larger images get 422
    max_batch_files: int = Field(default=16, ge=1)  # files accepted by /api/v1/predict/batch
    max_concurrency: int = Field(default=2, ge=1)  # predictions running at once; others queue
    cors_origins: list[str] = []  # browser origins allowed to call the API; empty = CORS off
    log_level: str = "info"

    def body_limit(self, files: int) -> int:
        """Largest request body accepted for ``files`` uploads (multipart framing included)."""
        return self.max_upload_bytes * files + MEGABYTE
