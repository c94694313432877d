"""``pneumoscan dicom-node``: a DICOM Storage SCP that sends results back to the PACS."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import typer

from pneumoscan.cli.console import (
    configure_logging,
    console,
    silence_header_messages,
    user_errors,
)
from pneumoscan.extras import require


def dicom_node_command(
    send_to: str | None = typer.Option(None, "--send-to", help="Where results go, "
                                       "AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242 (env "
                                       "PNEUMOSCAN_DICOM_SEND_TO)."),
    ae_title: str | None = typer.Option(None, "--ae-title", help="This node's AE title "
                                        "(default PNEUMOSCAN; env PNEUMOSCAN_DICOM_AE_TITLE)."),
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default "
                                    "127.0.0.1; env PNEUMOSCAN_DICOM_HOST)."),
    port: int | None = typer.Option(None, "--port", help="TCP port (default 11112; env "
                                    "PNEUMOSCAN_DICOM_PORT)."),
    allow_ae: str | None = typer.Option(None, "--allow-ae", help="Calling AE titles allowed "
                                        "to send, comma-separated (default: any; env "
                                        "PNEUMOSCAN_DICOM_ALLOW_AE)."),
    model: Path | None = typer.Option(None, "--model", help="Model folder or .safetensors "
                                      "file (default: the shipped model)."),
    backend: str | None = typer.Option(None, "--backend", help="auto, onnx or torch."),
    max_associations: int | None = typer.Option(None, "--max-associations", min=1,
                                                help="Associations open at once (default 4)."),
    max_predictions: int | None = typer.Option(None, "--max-predictions", min=1,
                                               help="Predictions at once: worker processes, each "
                                               "with the model loaded (default 2)."),
    spool_dir: Path | None = typer.Option(None, "--spool-dir", help="Where results that "
                                          "cannot be delivered are kept (they hold patient "
                                          "data: a protected folder)."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=0, max=65535,
                                            help="Serve /metrics (Prometheus) on this port of "
                                            "the node's host (env PNEUMOSCAN_DICOM_METRICS_"
                                            "PORT)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a DICOM node for a PACS.

    Receives radiographs over DICOM, predicts, sends an SR and a heat map back.

    Decision support, not for diagnostic use. Stops cleanly on SIGTERM or Ctrl-C: images
    already received are finished and their results sent.
    """
    configure_logging(verbose)
    with user_errors():
        require("pneumoscan dicom-node", ("pynetdicom", "highdicom"), "dicom-node")
        from pneumoscan.dicom_node.node import DicomNode
        from pneumoscan.dicom_node.settings import DicomNodeSettings
        from pneumoscan.memory import limit_malloc_arenas

        limit_malloc_arenas()  # one thread per association: see pneumoscan.memory

        silence_header_messages()
        options: dict[str, Any] = {
            "send_to": send_to, "ae_title": ae_title, "host": host, "port": port,
            "allow_ae": allow_ae, "model": model, "backend": backend,
            "max_associations": max_associations, "max_predictions": max_predictions,
            "spool_dir": spool_dir, "metrics_port": metrics_port}
        try:
            settings = DicomNodeSettings(**{k: v for k, v in options.items()
                                            if v is not None})
        except Exception as exc:  # pydantic's ValidationError: one line per bad field
            raise ValueError(_settings_error(exc)) from exc
        node = DicomNode(settings)  # its worker processes load the model
        node.start()
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] listening on {settings.host}: restrict who may "
                      "send with --allow-ae and a firewall")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    while not stop.wait(1.0):
        pass
    console.print("stopping: finishing the images received and sending their results")
    if not node.stop():
        raise typer.Exit(code=1)


def _settings_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                     for e in errors())
