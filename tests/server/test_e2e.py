"""End to end: the real Predictor behind the app, real files, every status code.

The shipped model (``pneumoscan/weights/default.safetensors``, the session's
``shipped_model``) behind the app, on the backend users get (ONNX Runtime when installed).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from pneumoscan.heatmap import legend_bar
from pneumoscan.server import ServerSettings, create_app
from pneumoscan.server.settings import MEGABYTE

pytestmark = pytest.mark.slow

PREDICT = "/api/v1/predict"


@pytest.fixture(scope="module")
def client(shipped_model: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerSettings(model=shipped_model))) as client:
        yield client


def post(client: TestClient, data: bytes, name: str, url: str = PREDICT) -> dict:
    response = client.post(url, files={"file": (name, data)})
    return {"status": response.status_code, **response.json()}


def test_real_model_on_a_shared_xray(client: TestClient,
                                     shared_pneumonia_images: list[Path]) -> None:
    card = client.get("/api/v1/model").json()
    body = post(client, shared_pneumonia_images[0].read_bytes(), "x.jpeg",
                PREDICT + "?heatmap=true")
    assert body["status"] == 200
    assert body["label"] in card["class_names"]
    assert 0.0 <= body["probability"] <= 1.0
    assert body["threshold"] == card["threshold"]
    assert body["model"] == card["version"]
    assert (body["cause"] is None) == (body["label"] == card["class_names"][0])
    overlay = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    legend = legend_bar(body["width"]).shape[0]  # the colour bar below the image
    assert overlay.size == (body["width"], body["height"] + legend)


def test_real_model_same_answer_as_body_as_form_and_as_the_library(
        client: TestClient, shared_normal_images: list[Path],
        shared_pneumonia_images: list[Path]) -> None:
    """The image as the body or as a form's file: the JSON of the Predictor's own answer."""
    predictor = client.app.state.predictor  # type: ignore[attr-defined]
    for path in shared_normal_images[:2] + shared_pneumonia_images[:2]:
        data = path.read_bytes()
        raw = client.post(PREDICT, content=data, headers={"content-type": "image/jpeg"})
        form = post(client, data, path.name)
        assert raw.status_code == form.pop("status") == 200
        body = raw.json()
        assert body.pop("elapsed_ms") >= 0 and form.pop("elapsed_ms") >= 0
        assert body == form
        expected = predictor.predict(data, heatmap=False).to_dict()
        assert body["label"] == expected["label"]
        assert body["probability"] == pytest.approx(expected["probability"], abs=1e-6)
        assert body["in_scope"] == expected["in_scope"]


def test_real_model_on_a_compressed_dicom(client: TestClient, dicom_dir: Path) -> None:
    data = (dicom_dir / "cr_nema_pa_monochrome1_jpeg2000.dcm").read_bytes()
    body = post(client, data, "chest.dcm", PREDICT + "?heatmap=true&image=true")
    assert body["status"] == 200
    assert (body["width"], body["height"]) == (1841, 1955)
    overlay = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    image = Image.open(io.BytesIO(base64.b64decode(body["image_png"])))
    assert image.size == (964, 1024)  # shrunk for the page, aspect kept
    assert overlay.size == (964, 1024 + legend_bar(964).shape[0])  # and the legend below


def test_real_model_batch(client: TestClient, shared_normal_images: list[Path],
                          dicom_dir: Path) -> None:
    files = [("files", (p.name, p.read_bytes())) for p in shared_normal_images[:3]]
    files.append(("files", ("bad.txt", b"not an image")))
    items = client.post("/api/v1/predict/batch", files=files).json()["items"]
    assert [i["status"] for i in items] == [200, 200, 200, 415]


def test_real_model_rejects_bad_files(client: TestClient, shared_normal_images: list[Path],
                                      dicom_dir: Path) -> None:
    from .conftest import png_bytes

    jpeg = shared_normal_images[0].read_bytes()
    dicom = (dicom_dir / "dx_nih_no_finding.dcm").read_bytes()
    import numpy as np

    cases = [
        (b"\xff\xd8\xff" + bytes(26 * MEGABYTE), "big.jpg", 413),
        (b"just some text", "notes.txt", 415),
        (b"", "empty.png", 422),
        (jpeg[: len(jpeg) // 3], "cut.jpeg", 422),
        (dicom[: len(dicom) // 2], "cut.dcm", 422),
        (png_bytes(np.zeros((8000, 8000), np.uint8)), "huge.png", 422),
    ]
    for data, name, status in cases:
        body = post(client, data, name)
        assert body["status"] == status, (name, body)
        assert isinstance(body["detail"], str) and len(body["detail"]) > 10
    assert client.get("/api/v1/health").json()["status"] == "ok"


def test_serve_command_passes_options_to_uvicorn(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    import uvicorn

    from pneumoscan.cli.main import app

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append({"target": target,
                                                                           **kw}))
    # The command hands its options on as PNEUMOSCAN_* variables: it writes them into a
    # copy of the environment (without any set outside), which the test then drops.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if not k.startswith("PNEUMOSCAN_")})
    result = CliRunner().invoke(app, ["serve", "--port", "8123", "--model", str(tmp_path),
                                      "--backend", "torch"])
    assert result.exit_code == 0, result.output
    assert calls[0]["target"] == "pneumoscan.server.app:create_app_from_environment"
    assert (calls[0]["host"], calls[0]["port"], calls[0]["workers"]) == ("127.0.0.1", 8123, 1)
    assert os.environ["PNEUMOSCAN_MODEL"] == str(tmp_path)
    assert os.environ["PNEUMOSCAN_BACKEND"] == "torch"


def test_serve_command_rejects_unknown_backend() -> None:
    from pneumoscan.cli.main import app

    result = CliRunner().invoke(app, ["serve", "--backend", "tpu"])
    assert result.exit_code == 2
    assert "backend" in result.output
