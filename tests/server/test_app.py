"""The application as ``pneumoscan serve`` runs it: the environment factory under a real
uvicorn on 127.0.0.1, spoken to over HTTP by ``http.client`` (only the model is a fake, so
that the test does not depend on the shipped weights)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from pneumoscan.server import app as app_module
from pneumoscan.server.settings import MEGABYTE, ServerSettings

from .conftest import FakePredictor

SERVE_TARGET = "pneumoscan.server.app:create_app_from_environment"  # what serve runs
UPLOAD_LIMIT = 200_000  # bytes per file: small, so that "too large" costs little to send


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """A uvicorn server on 127.0.0.1 running ``create_app_from_environment`` with its
    settings from ``PNEUMOSCAN_*`` variables, as ``pneumoscan serve`` starts it."""
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PNEUMOSCAN_MAX_UPLOAD_BYTES", str(UPLOAD_LIMIT))
        patch.setattr(app_module, "load_predictor", lambda settings: FakePredictor())
        server = uvicorn.Server(uvicorn.Config(SERVE_TARGET, factory=True, host="127.0.0.1",
                                               port=port, log_level="warning",
                                               log_config=None))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield port
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def post(port: int, body: object, content_type: str, *,
         chunked: bool = False) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/v1/predict", body=body,  # type: ignore[arg-type]
                           headers={"Content-Type": content_type}, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def zeros(total: int, prefix: bytes = b"") -> Iterator[bytes]:
    """A body sent chunk by chunk: nothing tells the server its length in advance."""
    yield prefix
    for _ in range(total // 65536):
        yield bytes(65536)


@pytest.mark.parametrize("size", [3 * UPLOAD_LIMIT, 3 * ServerSettings().body_limit(1)])
def test_oversized_chunked_body_is_413(port: int, size: int) -> None:
    # Below the body limit (the per-file check refuses it) and far above it (the upload
    # limit middleware stops reading): either way a 413 that says so, never a 500.
    status, body = post(port, zeros(size, b"\xff\xd8\xff\xe0"), "image/jpeg", chunked=True)
    assert status == 413, body
    assert "the limit is 0.2 MB per file" in str(body["detail"])


def test_oversized_chunked_form_is_413(port: int) -> None:
    head = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpeg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n")
    status, body = post(port, zeros(3 * MEGABYTE, head), "multipart/form-data; boundary=b",
                        chunked=True)
    assert status == 413, body
    assert "limit" in str(body["detail"])


def test_a_chunked_upload_under_the_limit_is_predicted(port: int, xray_jpeg: bytes) -> None:
    chunks = [xray_jpeg[i:i + 4096] for i in range(0, len(xray_jpeg), 4096)]
    status, body = post(port, iter(chunks), "image/jpeg", chunked=True)
    assert status == 200 and body["label"] == "PNEUMONIA"
