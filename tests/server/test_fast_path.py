"""The fast path answers a light ``POST /api/v1/predict`` without options (the image as the
body or a form's file) with the route's own JSON, and hands everything else to the route,
body intact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pneumoscan.server import ServerSettings, create_app, fast_path
from pneumoscan.server.routes import get_predictor

from .conftest import FakePredictor
from .test_routes import PREDICT, jpeg_bytes


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records each prediction the fast path makes (the route has its own reference)."""
    calls: list[int] = []
    original: Callable[..., Any] = fast_path.predict_bytes

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fast_path, "predict_bytes", spy)
    return calls


@pytest.fixture
def served() -> Iterator[TestClient]:
    """The app serving a predictor handed over at start-up, as ``pneumoscan serve`` does."""
    with TestClient(create_app(ServerSettings(), predictor=FakePredictor())) as client:
        yield client


def post_raw(client: TestClient, data: bytes, url: str = PREDICT) -> httpx.Response:
    return client.post(url, content=data, headers={"content-type": "image/jpeg"})


def test_light_image_gets_the_routes_json(served: TestClient, fast_calls: list[int],
                                          xray_jpeg: bytes, xray_png: bytes) -> None:
    as_form = served.post(PREDICT, files={"file": ("x.jpeg", xray_jpeg)})
    assert as_form.status_code == 200 and len(fast_calls) == 1
    fast_calls.clear()
    for data in (xray_jpeg, xray_png):
        fast = post_raw(served, data)
        assert fast.status_code == 200 and len(fast_calls) == 1
        fast_calls.clear()
        by_route = post_raw(served, data, url=PREDICT + "?heatmap=false")  # an option
        assert by_route.status_code == 200 and not fast_calls
        assert fast.headers["content-type"] == by_route.headers["content-type"]
        fast_json, route_json = fast.json(), by_route.json()
        assert fast_json.pop("elapsed_ms") >= 0 and route_json.pop("elapsed_ms") >= 0
        assert list(fast_json) == list(route_json) and fast_json == route_json
        assert "not a diagnosis" in fast_json["disclaimer"].lower()


def test_everything_else_goes_to_the_route(served: TestClient, fast_calls: list[int],
                                           xray_jpeg: bytes, dicom_path: Path) -> None:
    large = jpeg_bytes(np.zeros((1100, 1000), np.uint8))  # 1.1 MP: a worker thread's job
    answers = [
        served.post(PREDICT, files={"file": ("x.jpeg", xray_jpeg)},
                    data={"heatmap": "true"}),  # an option in the form
        post_raw(served, xray_jpeg, url=PREDICT + "?image=true"),
        post_raw(served, large),
        post_raw(served, dicom_path.read_bytes()),
    ]
    assert [a.status_code for a in answers] == [200] * 4
    assert "heatmap_png" in answers[0].json() and "image_png" in answers[1].json()
    assert answers[2].json()["width"] == 1000 and answers[3].json()["width"] == 256
    assert not fast_calls  # the large image and the DICOM were not even decoded here


def test_malformed_forms_go_to_the_route(served: TestClient, xray_jpeg: bytes) -> None:
    two_files = served.post(PREDICT, files=[("file", ("a.jpeg", xray_jpeg)),
                                            ("file", ("b.jpeg", xray_jpeg))])
    assert two_files.status_code == 422 and "one" in two_files.json()["detail"]
    wrong_field = served.post(PREDICT, files={"image": ("a.jpeg", xray_jpeg)})
    assert wrong_field.status_code == 422 and "field named 'file'" in wrong_field.json()["detail"]


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"", 422, "no file received"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 64, 422, "starts like a JPEG"),
    (b"plain text, no image", 415, "not a supported file"),
])
def test_errors_come_from_the_route(served: TestClient, body: bytes, status: int,
                                    words: str) -> None:
    response = post_raw(served, body)
    assert response.status_code == status
    assert words in response.json()["detail"]
    assert post_raw(served, jpeg_bytes(np.zeros((80, 80), np.uint8))).status_code == 200


def test_oversized_bodies_are_refused_before_the_fast_path(xray_jpeg: bytes) -> None:
    settings = ServerSettings(max_upload_bytes=len(xray_jpeg) - 1)
    with TestClient(create_app(settings, predictor=FakePredictor())) as client:
        response = post_raw(client, xray_jpeg)
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_fast_answers_carry_the_cors_headers(xray_jpeg: bytes, fast_calls: list[int]) -> None:
    settings = ServerSettings(cors_origins=["https://pacs.example"])
    with TestClient(create_app(settings, predictor=FakePredictor())) as client:
        response = client.post(PREDICT, content=xray_jpeg,
                               headers={"content-type": "image/jpeg",
                                        "origin": "https://pacs.example"})
    assert response.status_code == 200 and fast_calls == [1]
    assert response.headers["access-control-allow-origin"] == "https://pacs.example"


def test_a_server_without_its_model_answers_503_from_the_route(xray_jpeg: bytes) -> None:
    app = create_app(ServerSettings(), predictor=FakePredictor())
    with TestClient(app) as client:
        app.state.predictor = None  # as while the model loads
        response = post_raw(client, xray_jpeg)
    assert response.status_code == 503 and "not loaded" in response.json()["detail"]


def test_route_tests_overriding_the_predictor_are_unaffected(xray_jpeg: bytes,
                                                             fast_calls: list[int]) -> None:
    app = create_app(ServerSettings())
    fake = FakePredictor()
    app.dependency_overrides[get_predictor] = lambda: fake
    with TestClient(app) as client:
        assert post_raw(client, xray_jpeg).status_code == 200
    assert not fast_calls and fake.batches == [1]


def test_fast_requests_share_the_inference_slots(xray_jpeg: bytes) -> None:
    fake = FakePredictor(delay_s=0.05)
    app = create_app(ServerSettings(max_concurrency=2), predictor=fake)

    async def fire() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*[
                client.post(PREDICT, content=xray_jpeg, headers={"content-type": "image/jpeg"})
                for _ in range(6)] + [
                client.post(PREDICT + "?heatmap=true", files={"file": ("x.jpeg", xray_jpeg)})
                for _ in range(2)])
        return [r.status_code for r in responses]

    with TestClient(app):  # runs the lifespan: the predictor and the slots are set up
        assert asyncio.run(fire()) == [200] * 8
    assert fake.most_running <= 2
