"""The DICOM node's settings: command-line options or ``PNEUMOSCAN_DICOM_*`` variables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pneumoscan.imaging import DEFAULT_MAX_PIXELS

#: A DICOM AE title: 1 to 16 characters of the default repertoire, no backslash.
AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")
#: Where undeliverable results are kept when sending has failed every retry.
DEFAULT_SPOOL_DIR = Path.home() / ".local" / "state" / "pneumoscan" / "undelivered"


@dataclass(frozen=True)
class Destination:
    """A DICOM peer: its AE title, host and port (``AE@HOST:PORT``)."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """Read ``AE@HOST:PORT``, e.g. ``ORTHANC@127.0.0.1:4242``."""
        match = re.fullmatch(r"(?P<ae>[^@]+)@(?P<host>[^@:]+|\[[0-9a-fA-F:]+\]):(?P<port>\d+)",
                             text.strip())
        if match is None:
            raise ValueError(f"destination {text!r} is not AE@HOST:PORT "
                             "(e.g. ORTHANC@127.0.0.1:4242)")
        port = int(match["port"])
        if not 0 < port < 65536:
            raise ValueError(f"destination port {port} is not between 1 and 65535")
        return cls(check_ae_title(match["ae"]), match["host"].strip("[]"), port)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def check_ae_title(title: str) -> str:
    """``title`` without surrounding spaces, or ValueError when it is not a valid AE title."""
    title = title.strip()
    if not AE_TITLE.fullmatch(title):
        raise ValueError(f"AE title {title!r} must be 1 to 16 printable ASCII characters "
                         "without a backslash")
    return title


class DicomNodeSettings(BaseSettings):
    """Everything ``pneumoscan dicom-node`` can be told; each field reads
    ``PNEUMOSCAN_DICOM_<NAME>``, e.g. ``PNEUMOSCAN_DICOM_SEND_TO=ORTHANC@10.0.0.5:4242``."""

    model_config = SettingsConfigDict(env_prefix="PNEUMOSCAN_DICOM_", extra="ignore")

    ae_title: str = "PNEUMOSCAN"  # this node's AE title (the PACS's "called AE")
    host: str = "127.0.0.1"  # address to listen on; loopback unless the PACS is elsewhere
    port: int = Field(default=11112, ge=0, le=65535)  # 0: any free port (tests)
    send_to: str  # where results go, AE@HOST:PORT
    # Calling AE titles allowed to send (comma-separated in the variable); empty: any.
    allow_ae: Annotated[list[str], NoDecode] = []
    model: Path | None = None  # model folder or .safetensors file; None = the shipped model
    backend: Literal["auto", "torch", "onnx"] = "auto"
    max_associations: int = Field(default=4, ge=1)  # open at once; more are refused
    # Predictions at once, each in a worker process with the model loaded (about 150 MB
    # each); other images wait.
    max_predictions: int = Field(default=2, ge=1)
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)  # larger images are refused
    send_retries: int = Field(default=3, ge=1)  # tries per result before it is spooled
    retry_delay_s: float = Field(default=2.0, ge=0)  # before the 2nd try; doubled each time
    send_queue: int = Field(default=16, ge=1)  # results waiting to be sent; more: wait
    # One try's wait on the destination (connect, associate, each C-STORE answer).
    send_timeout_s: float = Field(default=20.0, gt=0)
    spool_dir: Path = DEFAULT_SPOOL_DIR  # undeliverable results are written here
    shutdown_timeout_s: float = Field(default=120.0, ge=0)  # to finish work on SIGTERM
    # Port of /metrics (Prometheus text format) on the node's host; None: not served.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # A connection that has not asked for an association within this time is closed.
    acse_timeout_s: float = Field(default=5.0, gt=0)
    # An association that sends nothing for this long is aborted (an idle PACS reconnects).
    network_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=30.0, gt=0)  # for a DIMSE message to arrive
    # When all max_associations are open, one that has been idle this long (not receiving,
    # not being answered) gives its place to a new sender instead of refusing it.
    idle_after_s: float = Field(default=5.0, ge=0)

    @field_validator("ae_title")
    @classmethod
    def _valid_ae_title(cls, value: str) -> str:
        return check_ae_title(value)

    @field_validator("send_to")
    @classmethod
    def _valid_destination(cls, value: str) -> str:
        return str(Destination.parse(value))

    @field_validator("allow_ae", mode="before")
    @classmethod
    def _split_titles(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [check_ae_title(str(title)) for title in value]
        return value

    @property
    def destination(self) -> Destination:
        return Destination.parse(self.send_to)
