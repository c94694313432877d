"""DICOM node test helpers: the shipped model on ONNX Runtime, real source datasets from
the shared DICOMs, and a real pynetdicom Storage SCP that collects what is sent to it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pneumoscan.extras import installed

if not (installed("pynetdicom") and installed("highdicom")):
    # Without the dicom-node extra (pip install -e '.[dicom-node]') there is nothing to test.
    collect_ignore_glob = ["test_*.py"]
else:
    from pynetdicom import AE, AllStoragePresentationContexts, evt

if TYPE_CHECKING:
    from pneumoscan.predictor import Predictor

#: The shared radiograph used wherever one real image will do (JPEG baseline, 1024 px).
SOURCE_FILE = "cr_siim_pa_jpeg_baseline.dcm"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def onnx_predictor(shipped_model: Path) -> Predictor:
    """The shipped model on ONNX Runtime (what the node runs by default), loaded once."""
    from pneumoscan.predictor import Predictor

    return Predictor.load(shipped_model, backend="onnx")


@pytest.fixture
def source_path(dicom_dir: Path) -> Path:
    return dicom_dir / SOURCE_FILE


@pytest.fixture
def source(source_path: Path) -> Dataset:
    return pydicom.dcmread(source_path)


def renamed(dataset: Dataset) -> Dataset:
    """A copy of ``dataset`` as a new instance of the same study (a new SOP Instance UID)."""
    copy = deepcopy(dataset)
    copy.SOPInstanceUID = generate_uid()
    copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
    return copy


@dataclass
class StorageSink:
    """A Storage SCP on 127.0.0.1 that keeps every dataset sent to it."""

    ae_title: str
    port: int
    status: int = 0x0000  # what it answers
    received: list[Dataset] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def address(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def handle(self, event: Any) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self.arrived:
            self.received.append(dataset)
            self.arrived.notify_all()
        return self.status

    def wait_for(self, count: int, timeout_s: float = 60.0) -> list[Dataset]:
        """The datasets once ``count`` have arrived; fails after ``timeout_s``."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout_s):
                pytest.fail(f"{len(self.received)} of {count} datasets arrived in "
                            f"{timeout_s:.0f} s")
            return list(self.received)


@pytest.fixture
def sink() -> Iterator[StorageSink]:
    sink = StorageSink("SINK", free_port())
    ae = AE(ae_title=sink.ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(("127.0.0.1", sink.port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, sink.handle)])
    try:
        yield sink
    finally:
        server.shutdown()
