"""Server test helpers: real files of every kind, and a fake predictor for route tests.

The fake decodes with the real decoder (so a bad file fails exactly as it would in
production) but answers with a fixed prediction instead of running a network.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan.imaging import DEFAULT_MAX_PIXELS, DecodedImage
from pneumoscan.modelcard import ModelCard
from pneumoscan.predictor import Prediction, Predictor
from pneumoscan.preprocessing import PreprocessConfig
from pneumoscan.server import ServerSettings, create_app


class FakeBackend:
    name = "fake"


class FakePredictor:
    """Decodes for real, predicts ``probability`` for every image, counts overlapping calls."""

    def __init__(self, probability: float = 0.8, max_pixels: int = DEFAULT_MAX_PIXELS,
                 delay_s: float = 0.0) -> None:
        self.probability = probability
        self.max_pixels = max_pixels
        self.delay_s = delay_s
        self.backend = FakeBackend()
        self.card = ModelCard(arch="fake", preprocessing=PreprocessConfig(image_size=64),
                              version="fake-1", threshold=0.5,
                              validation={"auc": 0.9, "brier": float("nan")})
        self.scope = object()  # "fitted": the routes only ask whether there is one
        self.batches: list[int] = []
        self.threads: list[str] = []  # the thread each batch was predicted on
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.card.version

    # The real Predictor's decode (its pixel limits), so that the routes meet its refusals.
    decode = Predictor.decode

    def predict_decoded(self, images: list[DecodedImage], *,
                        heatmap: bool = True) -> list[Prediction]:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.batches.append(len(images))
            self.threads.append(threading.current_thread().name)
        time.sleep(self.delay_s)
        with self._lock:
            self.running -= 1
        positive = self.probability >= 0.5
        return [Prediction(
            label="PNEUMONIA" if positive else "NORMAL", probability=self.probability,
            threshold=0.5, in_scope=not d.was_color,
            scope_reason="" if not d.was_color else "colour image: radiographs are grayscale",
            cause="bacterial" if positive else None,
            cause_probability=0.7 if positive else None,
            heatmap=np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7) if heatmap else None,
            model=self.version, width=d.pixels.shape[1], height=d.pixels.shape[0],
            pixels=d.pixels) for d in images]


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def xray_jpeg(shared_pneumonia_images: list[Path]) -> bytes:
    """A real chest X-ray JPEG from the shared training set."""
    return shared_pneumonia_images[0].read_bytes()


@pytest.fixture(scope="session")
def xray_png() -> bytes:
    """A grayscale PNG with some structure (300 x 200)."""
    yy, xx = np.mgrid[0:200, 0:300]
    return png_bytes(((xx + yy) % 256).astype(np.uint8))


@pytest.fixture(scope="session")
def dicom_path(dicom_dir: Path) -> Path:
    """A real 256 px CR chest DICOM (MONOCHROME1)."""
    return dicom_dir / "cr_ap_256px_monochrome1.dcm"


@pytest.fixture(scope="session")
def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def huge_png() -> bytes:
    """A real 8000 x 8000 PNG (64 MP, over the default 50 MP limit) of a few kilobytes."""
    return png_bytes(np.zeros((8000, 8000), np.uint8))


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """``make_client(settings=None, predictor=None)``: a started TestClient on a fake model,
    handed to ``create_app`` as a loaded model is: the app and its request path are the
    ones ``pneumoscan serve`` runs."""
    clients: list[TestClient] = []

    def factory(settings: ServerSettings | None = None, predictor: FakePredictor | None = None,
                **client_options: object) -> TestClient:
        settings = settings or ServerSettings()
        predictor = predictor or FakePredictor(max_pixels=settings.max_pixels)
        app = create_app(settings, predictor=predictor)  # type: ignore[arg-type]
        client = TestClient(app, **client_options)  # type: ignore[arg-type]
        client.__enter__()
        client.fake = predictor  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()
