"""``/metrics`` of the web server, scraped after real requests to the shipped model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from pneumoscan.modelfile import resolve_model
from pneumoscan.monitoring import not_applicable_reason
from pneumoscan.predictor import Predictor
from pneumoscan.server import ServerSettings, create_app


@pytest.fixture(scope="module")
def client(shipped_model: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerSettings(model=shipped_model, backend="onnx"))) as client:
        yield client


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def test_metrics_count_what_the_requests_got(client: TestClient, shipped_model: Path,
                                             shared_normal_images: list[Path],
                                             shared_pneumonia_images: list[Path],
                                             dicom_dir: Path) -> None:
    adult = dicom_dir / "dx_nih_no_finding.dcm"
    expected_reason = not_applicable_reason(Predictor.load(shipped_model,
                                                           backend="onnx").predict(adult))
    before = scrape(client)
    assert before.get(("pneumoscan_request_seconds_count", ()), 0) == 0
    version = client.get("/api/v1/health").json()["model"]
    assert before[("pneumoscan_model_info", (("backend", "onnx"), ("service", "web"),
                                             ("version", version)))] == 1

    answers = [client.post("/api/v1/predict", files={"file": (path.name, path.read_bytes())})
               for path in (shared_normal_images[0], shared_pneumonia_images[0], adult)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    labels = [a.json()["label"] for a in answers[:2]]
    refused = client.post("/api/v1/predict", files={"file": ("notes.txt", b"not an image")})
    assert refused.status_code == 415
    batch = client.post("/api/v1/predict/batch", files=[
        ("files", ("a.jpeg", shared_normal_images[1].read_bytes())),
        ("files", ("b.jpeg", shared_normal_images[2].read_bytes()[:900]))])
    assert [item["status"] for item in batch.json()["items"]] == [200, 422]
    labels.append(batch.json()["items"][0]["result"]["label"])

    found = scrape(client)
    images = "pneumoscan_images_total"
    positives = labels.count("PNEUMONIA")
    assert found.get((images, (("outcome", "positive"), ("reason", ""))), 0) == positives
    assert found.get((images, (("outcome", "negative"), ("reason", ""))), 0) == 3 - positives
    assert found[(images, (("outcome", "not_applicable"), ("reason", expected_reason)))] == 1
    assert found[(images, (("outcome", "refused"), ("reason", "415")))] == 1
    assert found[(images, (("outcome", "refused"), ("reason", "422")))] == 1
    assert found[("pneumoscan_request_seconds_count", ())] == 5  # requests, batch as one
    assert found[("pneumoscan_recent_images", ())] == 4
    expected_out = 1 / 4 if expected_reason.startswith("out_of_scope") else 0.0
    assert found[("pneumoscan_recent_out_of_scope_share", ())] == pytest.approx(expected_out)
    assert 0.0 < found[("pneumoscan_recent_mean_probability", ())] < 1.0
    validation = resolve_model(shipped_model).card.validation
    assert found[("pneumoscan_expected_positive_share", ())] == pytest.approx(
        (validation["tp"] + validation["fp"]) / validation["n"])
    text = client.get("/metrics").text
    for name in ("notes.txt", "a.jpeg", shared_normal_images[0].name, "dx_nih"):
        assert name not in text  # no file name (nor anything of a patient) in a label
