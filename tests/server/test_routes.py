"""Route tests on a fake predictor: every status code, with real files."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan import DISCLAIMER
from pneumoscan.heatmap import legend_bar
from pneumoscan.imaging import DecodedImage
from pneumoscan.predictor import Prediction
from pneumoscan.server import ServerSettings, create_app
from pneumoscan.server.settings import MEGABYTE

from .conftest import ClientFactory, FakePredictor, png_bytes

PREDICT = "/api/v1/predict"
BATCH = "/api/v1/predict/batch"


def post_file(client: TestClient, content: bytes, name: str = "xray.jpeg",
              url: str = PREDICT, **kwargs: object) -> httpx.Response:
    return client.post(url, files={"file": (name, content, "application/octet-stream")},
                       **kwargs)  # type: ignore[arg-type]


def decode_png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


# --- pages and metadata -------------------------------------------------------------------

def test_health_names_model_and_limits(client: TestClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": "fake-1", "backend": "fake",
                               "max_upload_bytes": 25 * MEGABYTE, "max_batch_files": 16,
                               "predictions_running": 0, "longest_prediction_s": 0.0}


def test_model_card_facts_without_scope_arrays_or_nan(client: TestClient) -> None:
    card = client.get("/api/v1/model").json()
    assert card["version"] == "fake-1"
    assert card["threshold"] == 0.5
    assert card["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert card["scope_check"] is True
    assert "scope" not in card
    assert card["validation"] == {"auc": 0.9, "brier": None}  # NaN cannot travel as JSON
    assert card["disclaimer"] == DISCLAIMER


def test_openapi_documents_both_ways_to_send_an_image(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    content = paths[PREDICT]["post"]["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    assert {"image/jpeg", "image/png", "application/dicom"} <= set(content)
    batch = paths[BATCH]["post"]["requestBody"]["content"]
    assert set(batch) == {"multipart/form-data"}
    assert {p["name"] for p in paths[PREDICT]["post"]["parameters"]} == {"heatmap", "image"}


def test_upload_page_is_self_contained(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "Decision support, not a diagnosis" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200
        # No CDN: nothing the page loads may come from another host.
        assert not re.search(r"https?://", response.text), asset
    assert not re.search(r"(src|href)=\"https?://", page.text)


def test_head_of_the_page_is_200_for_uptime_monitors(client: TestClient) -> None:
    response = client.head("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == b""


def test_docs_served_from_packaged_assets(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert not re.search(r"(src|href)=\"https?://", docs.text)  # no CDN
    bundle = client.get("/docs-assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    # Swagger UI 5 reads OpenAPI 3.1 (4.x answers "Unable to render this definition").
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.', bundle.text)
    assert version is not None and int(version.group(1)) >= 5
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    paths = schema["paths"]
    assert {PREDICT, BATCH, "/api/v1/health", "/api/v1/model"} <= set(paths)
    assert {"200", "413", "415", "422"} <= set(paths[PREDICT]["post"]["responses"])


def test_redoc_served_from_packaged_assets(client: TestClient) -> None:
    redoc = client.get("/redoc")
    assert redoc.status_code == 200
    assert "/redoc-assets/redoc.standalone.js" in redoc.text
    assert "/openapi.json" in redoc.text
    assert not re.search(r"(src|href)=\"https?://", redoc.text)  # no CDN, no Google fonts
    assert "img-src 'self' data:" in redoc.headers["content-security-policy"]
    script = client.get("/redoc-assets/redoc.standalone.js")
    assert script.status_code == 200 and len(script.content) > 500_000
    assert b"cdn.redoc.ly" not in script.content  # its menu's logo, from a CDN, left out
    assert b"cdn.redoc.ly" in client.get("/docs-assets/redoc.standalone.js").content


# --- 200 ------------------------------------------------------------------------------------

class PixelMeanPredictor(FakePredictor):
    """Answers each image with P(pneumonia) = its mean grey level / 255: a result that only
    the image sent can give."""

    def predict_decoded(self, images: list[DecodedImage], *,
                        heatmap: bool = True) -> list[Prediction]:
        results = []
        for decoded in images:
            self.probability = float(decoded.pixels.mean()) / 255.0
            results += super().predict_decoded([decoded], heatmap=heatmap)
        return results


def test_predict_jpeg_returns_every_field_of_this_image(make_client: ClientFactory,
                                                        xray_jpeg: bytes,
                                                        xray_png: bytes) -> None:
    client = make_client(predictor=PixelMeanPredictor())
    response = post_file(client, xray_jpeg)
    assert response.status_code == 200
    body = response.json()
    pixels = np.asarray(Image.open(io.BytesIO(xray_jpeg)).convert("L"))
    assert body["probability"] == pytest.approx(pixels.mean() / 255, abs=1e-3)
    assert body["threshold"] == 0.5
    assert body["label"] == ("PNEUMONIA" if body["probability"] >= 0.5 else "NORMAL")
    assert body["in_scope"] is True and body["scope_reason"] == ""
    assert body["model"] == "fake-1"
    assert (body["width"], body["height"]) == pixels.shape[::-1]
    assert body["heatmap_png"] is None and body["image_png"] is None  # not asked for
    assert body["elapsed_ms"] >= 0
    assert body["disclaimer"] == DISCLAIMER
    other = post_file(client, xray_png, "x.png").json()  # another image, another result
    assert (other["width"], other["height"]) == (300, 200)
    assert other["probability"] != pytest.approx(body["probability"], abs=1e-3)


@pytest.mark.parametrize("how", ["query", "form"])
def test_heatmap_png_on_request_keeps_aspect(client: TestClient, xray_png: bytes,
                                             how: str) -> None:
    if how == "query":
        response = post_file(client, xray_png, "x.png", url=PREDICT + "?heatmap=true")
    else:
        response = post_file(client, xray_png, "x.png", data={"heatmap": "true"})
    assert response.status_code == 200
    overlay = decode_png(response.json()["heatmap_png"])
    legend = legend_bar(300).shape[0]  # the colour bar below the image
    assert overlay.size == (300, 200 + legend) and overlay.mode == "RGB"


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream",
                                          "application/x-www-form-urlencoded"])
def test_raw_body_gives_the_same_result_as_a_form(client: TestClient, xray_jpeg: bytes,
                                                  content_type: str) -> None:
    raw = client.post(PREDICT + "?heatmap=true", content=xray_jpeg,
                      headers={"content-type": content_type})
    form = post_file(client, xray_jpeg, url=PREDICT + "?heatmap=true")
    assert raw.status_code == form.status_code == 200
    different = {"elapsed_ms"}
    assert {k: v for k, v in raw.json().items() if k not in different} == \
        {k: v for k, v in form.json().items() if k not in different}


def test_raw_dicom_body(client: TestClient, dicom_path: Path) -> None:
    response = client.post(PREDICT, content=dicom_path.read_bytes(),
                           headers={"content-type": "application/dicom"})
    assert response.status_code == 200
    assert (response.json()["width"], response.json()["height"]) == (256, 256)


def test_decoded_image_png_for_dicom(client: TestClient, dicom_path: Path) -> None:
    response = post_file(client, dicom_path.read_bytes(), "scan.dcm",
                         url=PREDICT + "?image=true")
    assert response.status_code == 200
    body = response.json()
    assert (body["width"], body["height"]) == (256, 256)
    assert decode_png(body["image_png"]).size == (256, 256)


def test_dicom_study_facts_without_patient_identity(client: TestClient,
                                                   dicom_dir: Path) -> None:
    path = dicom_dir / "cr_nema_pa_monochrome1_jpegls.dcm"
    body = post_file(client, path.read_bytes(), "scan.dcm").json()
    assert body["study"] == {"modality": "CR", "body_part": "CHEST", "view": "PA",
                             "study_date": "2004-08-26"}


def test_no_study_facts_for_a_jpeg(client: TestClient, xray_jpeg: bytes) -> None:
    assert post_file(client, xray_jpeg).json()["study"] is None


def test_heat_layer_is_rgba_at_the_image_aspect(client: TestClient, xray_png: bytes) -> None:
    body = post_file(client, xray_png, "x.png", url=PREDICT + "?heatmap=true").json()
    layer = decode_png(body["heatmap_layer_png"])
    assert layer.mode == "RGBA" and layer.size == (256, 171)  # 300 x 200, longer side 256
    alpha = np.asarray(layer)[..., 3]
    assert alpha.min() < 40 < 200 < alpha.max()  # clear where no evidence, opaque where strong
    assert post_file(client, xray_png, "x.png").json()["heatmap_layer_png"] is None


def test_cause_only_when_pneumonia(make_client: ClientFactory, xray_jpeg: bytes) -> None:
    client = make_client(predictor=FakePredictor(probability=0.2))
    body = post_file(client, xray_jpeg).json()
    assert body["label"] == "NORMAL"
    assert body["cause"] is None and body["cause_probability"] is None


def test_out_of_scope_colour_picture(client: TestClient) -> None:
    picture = Image.new("RGB", (120, 80), (200, 30, 30))
    picture.paste((20, 20, 220), (0, 0, 60, 80))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    body = post_file(client, buffer.getvalue(), "flag.png").json()
    assert body["in_scope"] is False
    assert "colour" in body["scope_reason"]
    # No finding, no cause; the raw output only under model_output, and no words for people.
    assert body["applicable"] is False and body["heatmap_style"] == "grey"
    assert body["label"] is body["probability"] is body["cause"] is body["positive"] is None
    assert body["model_output"]["label"] == "PNEUMONIA"
    assert body["model_output"]["cause"] == "bacterial" and body["model_output_note"] == ""
    assert body["not_applicable_reasons"][0].startswith("Out of scope: colour image")


# --- 413 ------------------------------------------------------------------------------------

def test_413_declared_length_over_limit(client: TestClient) -> None:
    response = post_file(client, b"\xff\xd8\xff" + bytes(26 * MEGABYTE), "big.jpg")
    assert response.status_code == 413
    assert "limit is 25 MB" in response.json()["detail"]
    assert client.get("/api/v1/health").status_code == 200


def test_413_file_over_limit_inside_the_body(make_client: ClientFactory,
                                            xray_jpeg: bytes) -> None:
    # The body passes the framing allowance; the file itself is over the per-file limit.
    client = make_client(ServerSettings(max_upload_bytes=1000))
    response = post_file(client, xray_jpeg)
    assert response.status_code == 413
    assert "per file" in response.json()["detail"]


def test_413_raw_body_over_the_per_file_limit(make_client: ClientFactory,
                                              xray_jpeg: bytes) -> None:
    client = make_client(ServerSettings(max_upload_bytes=1000))
    response = client.post(PREDICT, content=xray_jpeg, headers={"content-type": "image/jpeg"})
    assert response.status_code == 413
    assert "per file" in response.json()["detail"]


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=b", "image/jpeg"])
def test_413_chunked_upload_without_length(client: TestClient, content_type: str) -> None:
    def chunks() -> Iterator[bytes]:
        if content_type.startswith("multipart"):
            yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n"
        else:
            yield b"\xff\xd8\xff\xe0"
        for _ in range(30):
            yield bytes(MEGABYTE)

    response = client.post(PREDICT, content=chunks(), headers={"content-type": content_type})
    assert response.status_code == 413
    assert "limit is 25 MB per file" in response.json()["detail"]


# --- 415 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,data", [
    ("notes.txt", b"Patient presented with cough and fever.\n" * 20),
    ("report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n"),
])
def test_415_not_an_image(client: TestClient, name: str, data: bytes) -> None:
    response = post_file(client, data, name)
    assert response.status_code == 415
    assert response.json()["detail"] == ("not a supported file: send a chest X-ray as JPEG, "
                                         "PNG or DICOM")


def test_415_unsupported_image_format(client: TestClient, gif_bytes: bytes) -> None:
    response = post_file(client, gif_bytes, "anim.gif")
    assert response.status_code == 415
    assert "JPEG, PNG or DICOM" in response.json()["detail"]


# --- 422 ------------------------------------------------------------------------------------

def test_422_zero_bytes(client: TestClient) -> None:
    response = post_file(client, b"", "empty.jpeg")
    assert response.status_code == 422
    assert response.json()["detail"] == "the file is empty (0 bytes)"


@pytest.mark.parametrize("keep", [40, 0.5])
def test_422_truncated_jpeg(client: TestClient, xray_jpeg: bytes, keep: float) -> None:
    cut = int(keep) if keep >= 1 else int(len(xray_jpeg) * keep)
    response = post_file(client, xray_jpeg[:cut])
    assert response.status_code == 422
    assert "truncated or corrupt" in response.json()["detail"]


def test_422_png_cut_inside_its_header(client: TestClient, xray_png: bytes) -> None:
    response = post_file(client, xray_png[:30], "cut.png")
    assert response.status_code == 422
    assert response.json()["detail"] == ("the file starts like a PNG but cannot be read: it "
                                         "is truncated or corrupt")


def test_422_truncated_dicom(client: TestClient, dicom_path: Path) -> None:
    data = dicom_path.read_bytes()
    response = post_file(client, data[: len(data) // 2], "cut.dcm")
    assert response.status_code == 422
    assert "DICOM" in response.json()["detail"]


def test_422_over_the_pixel_limit(client: TestClient, huge_png: bytes) -> None:
    response = post_file(client, huge_png, "huge.png")
    assert response.status_code == 422
    assert "64,000,000 pixels is over the limit of 50,000,000" in response.json()["detail"]


@pytest.mark.parametrize("size", [(1, 1), (63, 500), (500, 40)])
def test_422_far_too_small_to_be_a_radiograph(client: TestClient, size: tuple[int, int]
                                              ) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    response = post_file(client, png_bytes(pixels), "tiny.png")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert f"{size[1]}x{size[0]} pixels is far too small" in detail
    assert "at least 64 pixels" in detail


def test_422_pixel_limit_from_settings(make_client: ClientFactory, xray_jpeg: bytes) -> None:
    client = make_client(ServerSettings(max_pixels=10_000))
    response = post_file(client, xray_jpeg)
    assert response.status_code == 422
    assert "over the limit of 10,000" in response.json()["detail"]


def test_422_missing_file_field(client: TestClient) -> None:
    response = client.post(PREDICT, files={"note": (None, "no file here")})  # a form, no file
    assert response.status_code == 422
    assert response.json()["detail"].startswith("no file received")
    assert "field named 'file'" in response.json()["detail"]


def test_a_form_without_a_file_is_read_as_the_image_and_refused(client: TestClient) -> None:
    # Anything that is not multipart is taken as the image itself; the bytes decide.
    response = client.post(PREDICT, data={"note": "no file here"})
    assert response.status_code == 415
    assert "JPEG, PNG or DICOM" in response.json()["detail"]


def test_422_empty_raw_body(client: TestClient) -> None:
    response = client.post(PREDICT, content=b"", headers={"content-type": "image/jpeg"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("no file received")


def test_422_two_files_to_the_single_image_endpoint(client: TestClient,
                                                    xray_jpeg: bytes) -> None:
    files = [("file", ("a.jpeg", xray_jpeg)), ("file", ("b.jpeg", xray_jpeg))]
    response = client.post(PREDICT, files=files)
    assert response.status_code == 422
    assert "use /predict/batch" in response.json()["detail"]


def test_422_heatmap_form_field_not_a_boolean(client: TestClient, xray_jpeg: bytes) -> None:
    response = post_file(client, xray_jpeg, data={"heatmap": "perhaps"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("form.heatmap:")


def test_422_bad_query_value(client: TestClient, xray_jpeg: bytes) -> None:
    response = post_file(client, xray_jpeg, url=PREDICT + "?heatmap=perhaps")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("query.heatmap:")


# --- batch ----------------------------------------------------------------------------------

def test_batch_reports_each_file(client: TestClient, xray_jpeg: bytes, dicom_path: Path,
                                 gif_bytes: bytes) -> None:
    files = [("files", ("a.jpeg", xray_jpeg)), ("files", ("b.gif", gif_bytes)),
             ("files", ("c.dcm", dicom_path.read_bytes())), ("files", ("d.jpeg", b""))]
    response = client.post(BATCH + "?heatmap=true", files=files)
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(i["filename"], i["status"]) for i in items] == [
        ("a.jpeg", 200), ("b.gif", 415), ("c.dcm", 200), ("d.jpeg", 422)]
    assert items[0]["result"]["label"] == "PNEUMONIA"
    assert items[0]["result"]["heatmap_png"]
    assert items[1]["result"] is None and "JPEG, PNG or DICOM" in items[1]["detail"]
    assert client.fake.batches == [2]  # type: ignore[attr-defined]  # one forward pass


def test_batch_file_over_limit_is_413_alone(make_client: ClientFactory, xray_jpeg: bytes,
                                           xray_png: bytes) -> None:
    client = make_client(ServerSettings(max_upload_bytes=len(xray_png) + 10))
    files = [("files", ("small.png", xray_png)), ("files", ("big.jpeg", xray_jpeg * 3))]
    items = client.post(BATCH, files=files).json()["items"]
    assert [i["status"] for i in items] == [200, 413]


def test_batch_too_many_files(make_client: ClientFactory, xray_png: bytes) -> None:
    client = make_client(ServerSettings(max_batch_files=2))
    response = client.post(BATCH, files=[("files", (f"{i}.png", xray_png)) for i in range(3)])
    assert response.status_code == 422
    assert response.json()["detail"] == "3 files sent; a batch takes at most 2"


def test_batch_without_files(client: TestClient) -> None:
    response = client.post(BATCH, data={"x": "1"})
    assert response.status_code == 422
    assert "field named 'files'" in response.json()["detail"]


# --- safety ---------------------------------------------------------------------------------

def test_keeps_serving_after_bad_files(client: TestClient, xray_jpeg: bytes,
                                       gif_bytes: bytes) -> None:
    for data in (b"", gif_bytes, xray_jpeg[:100], b"\x00" * 5000, b"DICM" * 100):
        assert post_file(client, data).status_code in (415, 422)
    assert post_file(client, xray_jpeg).status_code == 200


def test_server_fault_is_json_500_and_service_goes_on(make_client: ClientFactory,
                                                      xray_jpeg: bytes) -> None:
    class BrokenPredictor(FakePredictor):
        def predict_decoded(self, images, *, heatmap=True):  # type: ignore[no-untyped-def]
            raise RuntimeError("backend crashed")

    client = make_client(predictor=BrokenPredictor(), raise_server_exceptions=False)
    response = post_file(client, xray_jpeg)
    assert response.status_code == 500
    assert "keeps running" in response.json()["detail"]
    assert client.get("/api/v1/health").status_code == 200


def test_no_image_content_names_or_patient_tags_in_logs(
        client: TestClient, dicom_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    import pydicom

    path = dicom_dir / "cr_siim_pa_jpeg_baseline.dcm"
    header = pydicom.dcmread(path, stop_before_pixels=True)
    secrets = {str(header.PatientName), str(header.PatientID), "Jane_Doe_1970"}
    with caplog.at_level(logging.DEBUG):
        assert post_file(client, path.read_bytes(), "Jane_Doe_1970.dcm").status_code == 200
        assert post_file(client, b"Jane_Doe_1970 junk", "Jane_Doe_1970.txt").status_code == 415
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert not [secret for secret in secrets if secret in text]


@pytest.mark.parametrize("url", [PREDICT, BATCH])
def test_uploads_never_touch_the_disk(client: TestClient, xray_jpeg: bytes, url: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_disk(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was spooled to a temporary file")

    # A SpooledTemporaryFile rolls over to disk through tempfile.TemporaryFile.
    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    temp = Path(tempfile.gettempdir())
    before = set(temp.iterdir())
    big = xray_jpeg + bytes(3 * MEGABYTE)  # past Starlette's 1 MB in-memory spool
    field = "file" if url == PREDICT else "files"
    response = client.post(url, files=[(field, ("big.jpeg", big))])
    assert response.status_code == 200
    assert set(temp.iterdir()) - before == set()


def test_cors_off_by_default(client: TestClient) -> None:
    response = client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_when_configured(make_client: ClientFactory) -> None:
    client = make_client(ServerSettings(cors_origins=["https://pacs.example"]))
    response = client.get("/api/v1/health", headers={"Origin": "https://pacs.example"})
    assert response.headers["access-control-allow-origin"] == "https://pacs.example"


def test_inference_concurrency_is_bounded(xray_png: bytes, xray_jpeg: bytes) -> None:
    fake = FakePredictor(delay_s=0.05)
    app = create_app(ServerSettings(max_concurrency=2), predictor=fake)  # type: ignore[arg-type]

    async def fire() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*[
                client.post(PREDICT + "?heatmap=true", files={"file": ("x.png", xray_png)})
                for _ in range(6)] + [
                client.post(PREDICT, content=xray_jpeg, headers={"content-type": "image/jpeg"})
                for _ in range(6)])
        return [r.status_code for r in responses]

    with TestClient(app):  # runs the lifespan: the predictor and the slots are set up
        assert asyncio.run(fire()) == [200] * 12
    assert fake.most_running == 2  # 12 requests, never more than 2 predicting at once


def test_every_prediction_runs_on_a_worker_thread(xray_jpeg: bytes, xray_png: bytes,
                                                  dicom_path: Path) -> None:
    """Small or large, with options or none, the event loop never runs a prediction."""
    fake = FakePredictor()
    app = create_app(ServerSettings(), predictor=fake)  # type: ignore[arg-type]
    uploads = [xray_jpeg, xray_png, dicom_path.read_bytes()]

    async def fire() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = [await client.post(PREDICT, content=data) for data in uploads]
            responses += [await client.post(PREDICT + "?heatmap=true",
                                            files={"file": ("x", xray_jpeg)}),
                          await client.post(BATCH, files=[("files", ("a", xray_png))])]
        return [r.status_code for r in responses]

    with TestClient(app):
        assert asyncio.run(fire()) == [200] * 5  # the loop runs on this (the main) thread
    assert len(fake.threads) == 5 and "MainThread" not in fake.threads


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMOSCAN_PORT", "9100")
    monkeypatch.setenv("PNEUMOSCAN_BACKEND", "torch")
    monkeypatch.setenv("PNEUMOSCAN_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("PNEUMOSCAN_CORS_ORIGINS", '["http://a.example"]')
    settings = ServerSettings()
    assert (settings.port, settings.backend, settings.max_upload_bytes) == (9100, "torch", 1000)
    assert settings.cors_origins == ["http://a.example"]
    assert settings.host == "127.0.0.1"  # loopback unless asked


def test_serves_a_predictor_handed_over_without_loading_a_model(xray_jpeg: bytes) -> None:
    fake = FakePredictor(probability=0.1)
    # A model path that does not exist: it must not be touched.
    app = create_app(ServerSettings(model=Path("/nonexistent/model.safetensors")),
                     predictor=fake)  # type: ignore[arg-type]
    with TestClient(app) as client:
        response = client.post(PREDICT, content=xray_jpeg,
                               headers={"content-type": "image/jpeg"})
        assert response.status_code == 200
        assert response.json()["label"] == "NORMAL"
        assert client.get("/api/v1/health").json()["model"] == "fake-1"
