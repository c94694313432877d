"""``--metrics-port``: the DICOM node's /metrics, scraped over HTTP after real C-STOREs."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset

from pneumoscan.dicom_node import intake
from pneumoscan.dicom_node.node import DicomNode
from pneumoscan.dicom_node.settings import DicomNodeSettings
from pneumoscan.monitoring import not_applicable_reason
from pneumoscan.predictor import Predictor

from .conftest import StorageSink, free_port, renamed
from .test_node import send

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom on person names


@pytest.fixture
def node(shipped_model: Path, sink: StorageSink, tmp_path: Path) -> Iterator[DicomNode]:
    settings = DicomNodeSettings(send_to=sink.address, port=free_port(), metrics_port=0,
                                 model=shipped_model, backend="onnx",
                                 spool_dir=tmp_path / "spool", retry_delay_s=0.0,
                                 shutdown_timeout_s=60)
    node = DicomNode(settings)
    node.start()
    yield node
    node.stop()


def scrape(port: int) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return text, {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for family in text_string_to_metric_families(text) for s in family.samples}


def test_node_metrics_after_real_stores(node: DicomNode, sink: StorageSink, source: Dataset,
                                        onnx_predictor: Predictor, source_path: Path) -> None:
    lateral = renamed(source)
    lateral.ViewPosition = "LL"
    tiny = renamed(source)
    tiny.set_pixel_data(np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8),
                        "MONOCHROME2", 8)
    assert send(node, source, lateral, tiny) == [intake.SUCCESS, intake.SUCCESS,
                                                 intake.TOO_SMALL]
    sink.wait_for(2)
    prediction = onnx_predictor.predict(source_path)  # what the node made of the good one
    outcome = ("not_applicable", not_applicable_reason(prediction)) \
        if not prediction.applicable else (
            "positive" if prediction.is_pneumonia else "negative", "")
    text, found = scrape(node.metrics_port)
    images = "pneumoscan_images_total"
    assert found[(images, (("outcome", outcome[0]), ("reason", outcome[1])))] == 1
    assert found[(images, (("outcome", "not_applicable"),
                           ("reason", "out_of_scope_header")))] == 1
    assert found[(images, (("outcome", "refused"), ("reason", "0xC102")))] == 1
    assert found[("pneumoscan_request_seconds_count", ())] == 3
    assert found[("pneumoscan_model_info", (("backend", "onnx"), ("service", "dicom"),
                                            ("version", onnx_predictor.version)))] == 1
    assert found[("pneumoscan_recent_images", ())] == 2
    assert str(source.PatientID) not in text and str(source.StudyInstanceUID) not in text
    port = node.metrics_port
    assert node.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
