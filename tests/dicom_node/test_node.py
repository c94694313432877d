"""The Storage SCP in this process, the real model, a real SCU and a real destination:
good images get results, bad ones the right status, and the node keeps serving."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE

from pneumoscan.dicom_node import intake
from pneumoscan.dicom_node.node import DicomNode
from pneumoscan.dicom_node.settings import DicomNodeSettings
from pneumoscan.errors import ModelFileError

from .conftest import StorageSink, free_port, renamed

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom on person names


@pytest.fixture
def node(shipped_model: Path, sink: StorageSink, tmp_path: Path) -> Iterator[DicomNode]:
    settings = DicomNodeSettings(send_to=sink.address, port=free_port(), model=shipped_model,
                                 backend="onnx",
                                 allow_ae=["MODALITY"], spool_dir=tmp_path / "spool",
                                 retry_delay_s=0.0, shutdown_timeout_s=60)
    node = DicomNode(settings)
    node.start()
    yield node
    node.stop()


def send(node: DicomNode, *datasets: Dataset, calling: str = "MODALITY") -> list[int | None]:
    """C-STORE ``datasets`` over one association; their statuses (None: not sent)."""
    ae = AE(ae_title=calling)
    for sop_class in intake.ACCEPTED_SOP_CLASSES:  # one context per syntax a dataset has
        for syntax in (JPEGBaseline8Bit, ExplicitVRLittleEndian):
            ae.add_requested_context(sop_class, syntax)
    for timeout in ("acse_timeout", "dimse_timeout", "network_timeout"):
        setattr(ae, timeout, 60)
    association = ae.associate("127.0.0.1", node.port, ae_title=node.settings.ae_title)
    if not association.is_established:
        return [None] * len(datasets)
    statuses = []
    try:
        for dataset in datasets:
            status = association.send_c_store(dataset)
            statuses.append(int(status.Status) if "Status" in status else None)
    finally:
        association.release()
    return statuses


def test_an_image_gets_an_sr_and_a_heat_map(node: DicomNode, sink: StorageSink,
                                            source: Dataset) -> None:
    assert send(node, source) == [intake.SUCCESS]
    received = sink.wait_for(2)
    sr = next(d for d in received if d.SOPClassUID == ComprehensiveSRStorage)
    capture = next(d for d in received if d.SOPClassUID != ComprehensiveSRStorage)
    for result in (sr, capture):
        assert result.StudyInstanceUID == source.StudyInstanceUID
        assert result.PatientID == source.PatientID
    assert capture.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert node.counts.predicted == 1


def test_bad_input_gets_a_status_and_the_node_keeps_serving(node: DicomNode,
                                                           sink: StorageSink,
                                                           source: Dataset) -> None:
    no_pixels = renamed(source)
    del no_pixels.PixelData
    corrupt = renamed(source)  # JPEG baseline whose stream is noise
    corrupt.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8])
    assert corrupt.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    lateral = renamed(source)
    lateral.ViewPosition = "LL"
    tiny = renamed(source)
    tiny.set_pixel_data(np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8),
                        "MONOCHROME2", 8)
    assert tiny.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    statuses = send(node, no_pixels, corrupt, lateral, tiny, renamed(source))
    assert statuses == [intake.DOES_NOT_MATCH_SOP_CLASS, intake.CANNOT_DECODE,
                        intake.SUCCESS, intake.TOO_SMALL, intake.SUCCESS]
    sink.wait_for(2)  # the last, good image's two results; the lateral view gets none
    assert node.stop()
    assert len(sink.received) == 2
    assert (node.counts.refused, node.counts.skipped, node.counts.predicted) == (3, 1, 1)


def test_a_calling_ae_outside_the_allow_list_is_refused(node: DicomNode, source: Dataset,
                                                        caplog: pytest.LogCaptureFixture,
                                                        ) -> None:
    assert send(node, source, calling="INTRUDER") == [None]
    assert "refused an association from calling AE 'INTRUDER'" in caplog.text
    assert send(node, renamed(source)) == [intake.SUCCESS]


@pytest.mark.skipif(shutil.which("echoscu") is None,
                    reason="dcmtk's echoscu is not installed (make dicom-tools)")
def test_echoscu_is_the_connectivity_check(node: DicomNode) -> None:
    """The README's check, with dcmtk: C-ECHO answered for an allowed calling AE title,
    the association refused for another."""
    def echo(calling: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["echoscu", "-v", "-aet", calling, "-aec",
                               node.settings.ae_title, "127.0.0.1", str(node.port)],
                              capture_output=True, text=True, timeout=60, check=False)

    allowed = echo("MODALITY")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "Received Echo Response (Success)" in allowed.stdout + allowed.stderr
    refused = echo("INTRUDER")
    assert refused.returncode != 0
    assert "Association Rejected" in refused.stdout + refused.stderr


def test_stop_sends_what_was_received(node: DicomNode, sink: StorageSink,
                                      source: Dataset) -> None:
    assert send(node, source, renamed(source)) == [intake.SUCCESS] * 2
    assert node.stop()  # returns once every queued result is sent
    assert len(sink.received) == 4
    assert node.sender.counts.delivered == 2


def test_logs_name_no_patient(node: DicomNode, sink: StorageSink, source: Dataset,
                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="pneumoscan")
    send(node, source)
    sink.wait_for(2)
    node.stop()
    # pneumoscan's own records (the CLI quiets pydicom's, highdicom's and pynetdicom's).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pneumoscan"))
    assert "image 1" in ours
    for value in (source.PatientID, str(source.PatientName), source.StudyInstanceUID,
                  source.SOPInstanceUID):
        assert value not in ours


def _content(report: Dataset) -> list[tuple[str, str]]:
    """An SR's content tree as (concept, value) pairs, numbers to 4 places."""
    pairs = []

    def walk(items: list[Dataset]) -> None:
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeValue
            if "ConceptCodeSequence" in item:
                value = item.ConceptCodeSequence[0].CodeValue
            elif "MeasuredValueSequence" in item:
                value = f"{float(item.MeasuredValueSequence[0].NumericValue):.4f}"
            else:
                value = str(item.get("TextValue", item.get("ReferencedSOPSequence", "")))
            pairs.append((name, value))
            walk(item.get("ContentSequence", []))

    walk(report.ContentSequence)
    return pairs


def test_dicom_out_gives_what_the_node_gives(node: DicomNode, sink: StorageSink,
                                             source: Dataset, shipped_model: Path,
                                             tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """The same two files, a frontal adult film and a lateral one, through the node and
    through ``predict --dicom-out``: the same objects for the first, nothing for the
    second, with the same reason."""
    from typer.testing import CliRunner

    from pneumoscan.cli.main import app

    lateral = renamed(source)
    lateral.ViewPosition = "LL"
    inputs = tmp_path / "in"
    inputs.mkdir()
    source.save_as(inputs / "frontal.dcm", enforce_file_format=True)
    lateral.save_as(inputs / "lateral.dcm", enforce_file_format=True)

    caplog.set_level("INFO", logger="pneumoscan.dicom_node")
    assert send(node, source, lateral) == [intake.SUCCESS] * 2
    sink.wait_for(2)
    assert node.stop()
    assert len(sink.received) == 2  # the frontal film's SR and SC; none for the lateral
    log = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.dicom_node.node"]
    (skip,) = [line for line in log if "stored, no result" in line]
    node_reason = skip.split("stored, no result: ", 1)[1]
    assert "lateral" in node_reason
    # the adult's log line says it first (the shared film's header gives an adult age)
    assert any("NOT APPLICABLE: adult" in line and "results queued" in line for line in log)

    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["predict", str(inputs), "--dicom-out", str(out),
                                      "--model", str(shipped_model), "--backend", "onnx"])
    assert result.exit_code == 0, result.output
    assert "1 DICOM result(s)" in result.output
    assert f"no DICOM result for lateral.dcm: {node_reason}" in " ".join(result.output.split())
    assert sorted(p.name for p in out.iterdir()) == ["frontal.heatmap.dcm", "frontal.sr.dcm"]
    written = {d.SOPInstanceUID: d for d in (pydicom.dcmread(p) for p in out.iterdir())}
    for sent in sink.received:
        twin = written[sent.SOPInstanceUID]  # the same object, by its derived UID
        assert twin.SOPClassUID == sent.SOPClassUID
        if sent.SOPClassUID == ComprehensiveSRStorage:
            assert _content(twin) == _content(sent)
        else:
            assert twin.pixel_array.shape == sent.pixel_array.shape


def test_senders_may_send_large_pdus(node: DicomNode) -> None:
    """A film comes in PDUs of up to MAXIMUM_PDU_BYTES, not pynetdicom's 16 KB."""
    from pneumoscan.dicom_node.node import MAXIMUM_PDU_BYTES

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.1.1")
    association = ae.associate("127.0.0.1", node.port, ae_title=node.settings.ae_title)
    try:
        assert association.is_established
        assert association.acceptor.maximum_length == MAXIMUM_PDU_BYTES == 1 << 20
        (accepted,) = node._ae.active_associations
        # Its replies are not held back by Nagle's algorithm (dicom_node.tcp).
        assert accepted.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        association.release()


def test_a_prediction_process_that_dies_is_replaced(node: DicomNode, sink: StorageSink,
                                                    source: Dataset,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A worker killed (a codec's crash, the out-of-memory killer) costs no image: the
    next one goes to new worker processes and gets its results."""
    os.kill(node.workers.pids[0], signal.SIGKILL)
    assert send(node, renamed(source)) == [intake.SUCCESS]
    assert len(sink.wait_for(2)) == 2
    assert "a prediction process stopped" in caplog.text
    assert send(node, renamed(source)) == [intake.SUCCESS]


def test_a_model_that_cannot_load_stops_the_node_with_its_reason(tmp_path: Path) -> None:
    settings = DicomNodeSettings(send_to="PACS@127.0.0.1:104", port=free_port(),
                                 model=tmp_path / "missing", spool_dir=tmp_path / "spool")
    with pytest.raises(ModelFileError, match="not found"):
        DicomNode(settings)
