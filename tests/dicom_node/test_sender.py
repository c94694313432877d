"""Sending results: delivered, or retried and kept in the spool, never lost silently."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from pynetdicom import AE, AllStoragePresentationContexts, evt

from pneumoscan.dicom_node.results import build_results
from pneumoscan.dicom_node.sender import ResultBundle, ResultSender, jpeg_pixels
from pneumoscan.dicom_node.settings import Destination
from pneumoscan.predictor import Predictor

from .conftest import StorageSink, free_port, renamed

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom on person names


@pytest.fixture
def results(onnx_predictor: Predictor, source: Dataset, source_path: Path) -> list[Dataset]:
    return build_results(source, onnx_predictor.predict(source_path))


def sender_to(destination: Destination, spool: Path) -> ResultSender:
    return ResultSender(destination, calling_ae_title="PNEUMOSCAN", spool_dir=spool,
                        retries=2, retry_delay_s=0.0, timeout_s=5.0)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds or ``timeout_s`` passes (the assertions after it
    say what did not happen)."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


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
    if arrives == JPEGBaseline8Bit:
        assert np.array_equal(capture.pixel_array, made.pixel_array)
    else:  # the JPEG's pixels, as libjpeg-turbo decodes them, kept losslessly
        assert capture.PhotometricInterpretation == "RGB"
        assert np.array_equal(capture.pixel_array, jpeg_pixels(made))
    assert sender.counts.delivered == 1


def counting_sink() -> tuple[StorageSink, Any, list[Any]]:
    """A sink that also keeps each association it accepted, and its server."""
    sink = StorageSink("SINK", free_port())
    accepted: list[Any] = []
    ae = AE(ae_title=sink.ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(("127.0.0.1", sink.port), block=False, evt_handlers=[
        (evt.EVT_C_STORE, sink.handle),
        (evt.EVT_ACCEPTED, lambda event: accepted.append(event.assoc))])
    return sink, server, accepted


def test_results_that_keep_coming_share_one_association(results: list[Dataset],
                                                        tmp_path: Path) -> None:
    sink, server, accepted = counting_sink()
    try:
        sender = ResultSender(Destination.parse(sink.address), calling_ae_title="PNEUMOSCAN",
                              spool_dir=tmp_path / "spool", keep_open_s=30.0)
        for number in range(3):
            sender.submit(ResultBundle(number, [renamed(d) for d in results]))
        sink.wait_for(6)
        (connection,) = sender._ae.active_associations  # kept open for the next result
        no_delay = connection.dul.socket.socket.getsockopt(socket.IPPROTO_TCP,
                                                           socket.TCP_NODELAY)
        assert sender.close(30)
    finally:
        server.shutdown()
    assert len(accepted) == 1
    assert no_delay, "the results' connection waits for Nagle's algorithm"
    assert sender.counts.delivered == 3 and sender.counts.retries == 0


def test_an_association_the_destination_closed_is_replaced_without_a_retry(
        results: list[Dataset], tmp_path: Path) -> None:
    sink, server, accepted = counting_sink()
    try:
        sender = ResultSender(Destination.parse(sink.address), calling_ae_title="PNEUMOSCAN",
                              spool_dir=tmp_path / "spool", keep_open_s=30.0)
        sender.submit(ResultBundle(1, results))
        sink.wait_for(2)
        # The sink has the objects before the sender has their answers.
        wait_until(lambda: sender.counts.delivered == 1)
        accepted[0].abort()  # the PACS closes the idle association
        wait_until(lambda: not sender._ae.active_associations)
        sender.submit(ResultBundle(2, [renamed(d) for d in results]))
        assert sender.close(30)
        sink.wait_for(4)
    finally:
        server.shutdown()
    assert len(accepted) == 2
    assert sender.counts.delivered == 2 and sender.counts.retries == 0
    assert sender.counts.spooled == 0

