"""Sending results: delivered, or retried and kept in the spool, never lost silently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    SecondaryCaptureImageStorage,
)
from pynetdicom import AE, evt

from pneumoscan.dicom_node.node import build_results
from pneumoscan.dicom_node.sender import ResultBundle, ResultSender
from pneumoscan.dicom_node.settings import Destination
from pneumoscan.predictor import Predictor

from .conftest import StorageSink, free_port

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom on person names


@pytest.fixture
def results(onnx_predictor: Predictor, source: Dataset, source_path: Path) -> list[Dataset]:
    return build_results(source, onnx_predictor.predict(source_path))


def sender_to(destination: Destination, spool: Path) -> ResultSender:
    return ResultSender(destination, calling_ae_title="PNEUMOSCAN", spool_dir=spool,
                        retries=2, retry_delay_s=0.0, timeout_s=5.0)


def test_results_are_delivered(sink: StorageSink, results: list[Dataset],
                               tmp_path: Path) -> None:
    sender = sender_to(Destination.parse(sink.address), tmp_path / "spool")
    sender.submit(ResultBundle(1, results))
    assert sender.close(30)
    received = sink.wait_for(2)
    assert {d.SOPInstanceUID for d in received} == {d.SOPInstanceUID for d in results}
    assert sender.counts.delivered == 1 and sender.counts.spooled == 0
    assert not (tmp_path / "spool").exists()


def test_unreachable_destination_is_retried_then_spooled(results: list[Dataset],
                                                         tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    sender = sender_to(Destination("NOBODY", "127.0.0.1", free_port()), spool)
    sender.submit(ResultBundle(7, results))
    assert sender.close(30)
    assert sender.counts.retries == 1 and sender.counts.spooled == 1
    kept = sorted(spool.glob("*.dcm"))
    assert {pydicom.dcmread(p).SOPInstanceUID for p in kept} == {d.SOPInstanceUID
                                                                 for d in results}


def test_a_failure_status_is_retried_then_spooled(sink: StorageSink, results: list[Dataset],
                                                  tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    sink.status = 0xA700  # the PACS is out of resources
    sender = sender_to(Destination.parse(sink.address), tmp_path / "spool")
    sender.submit(ResultBundle(3, results))
    assert sender.close(30)
    assert sender.counts.spooled == 1 and sender.counts.delivered == 0
    assert "result 3: not delivered" in caplog.text and "0xA700" in caplog.text
    assert len(list((tmp_path / "spool").glob("*.dcm"))) == 2


@pytest.mark.parametrize(("offered", "arrives"), [
    ((JPEGBaseline8Bit, JPEGLSLossless, ExplicitVRLittleEndian), JPEGBaseline8Bit),
    ((JPEGLSLossless, ImplicitVRLittleEndian), JPEGLSLossless),
    ((ImplicitVRLittleEndian,), ImplicitVRLittleEndian),
])
def test_the_capture_goes_compressed_where_the_destination_accepts_it(
        results: list[Dataset], tmp_path: Path, offered: tuple[str, ...],
        arrives: str) -> None:
    """The destination takes JPEG baseline: it gets the JPEG; JPEG-LS lossless only: the
    same pixels re-encoded losslessly; uncompressed only: decompressed. Same instance."""
    sink = StorageSink("SINK", free_port())
    ae = AE(ae_title=sink.ae_title)
    ae.add_supported_context(SecondaryCaptureImageStorage, list(offered))
    ae.add_supported_context(ComprehensiveSRStorage, [ImplicitVRLittleEndian])
    server = ae.start_server(("127.0.0.1", sink.port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, sink.handle)])
    try:
        sender = sender_to(Destination.parse(sink.address), tmp_path / "spool")
        sender.submit(ResultBundle(1, results))
        assert sender.close(30)
        received = sink.wait_for(2)
    finally:
        server.shutdown()
    (capture,) = [d for d in received if d.SOPClassUID == SecondaryCaptureImageStorage]
    (made,) = [d for d in results if d.SOPClassUID == SecondaryCaptureImageStorage]
    assert capture.file_meta.TransferSyntaxUID == arrives
    assert capture.SOPInstanceUID == made.SOPInstanceUID
    assert capture.LossyImageCompression == "01"  # the pixels came from the JPEG
    assert np.array_equal(capture.pixel_array, made.pixel_array)
    assert sender.counts.delivered == 1
