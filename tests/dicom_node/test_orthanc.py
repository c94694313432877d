"""End to end against a real PACS: Debian's Orthanc sends the shared radiographs to a
running ``pneumoscan dicom-node``, whose SR and heat map for each arrive back in Orthanc;
dcmtk's ``storescu`` sends hostile files and gets failure statuses from a node that keeps
working. Skipped with a message where Orthanc or dcmtk is not installed."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage, generate_uid

from pneumoscan.dicom_node import codes
from pneumoscan.predictor import Prediction, Predictor

from .conftest import free_port
from .orthanc_server import OrthancServer, listening_addresses, missing_tools, running_orthanc
from .sr_content import finding_in, model_output_in, probability_in

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

#: The routing script the README offers for Orthanc.
ROUTE_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "orthanc" \
    / "route-to-pneumoscan.lua"
NODE_START_TIMEOUT_S = 120  # loading the model on a busy 2-core machine
RESULTS_TIMEOUT_S = 120


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    spool: Path


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OrthancServer, Node]]:
    """Orthanc, with pneumoscan as a modality, and a running ``pneumoscan dicom-node``."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("pacs")
    node_port, dicom_port, http_port = free_port(), free_port(), free_port()
    with running_orthanc(folder / "orthanc", dicom_port=dicom_port, http_port=http_port,
                         modalities={"pneumoscan": ("PNEUMOSCAN", "127.0.0.1", node_port)},
                         ) as orthanc:
        node = start_node(folder, node_port, orthanc)
        try:
            yield orthanc, node
        finally:
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait(10)


def start_node(folder: Path, port: int, orthanc: OrthancServer) -> Node:
    log = folder / "node.log"
    spool = folder / "spool"
    command = [sys.executable, "-m", "pneumoscan", "dicom-node", "--ae-title", "PNEUMOSCAN",
               "--port", str(port), "--send-to", orthanc.address,
               "--allow-ae", "ORTHANC,STORESCU", "--spool-dir", str(spool),
               "--backend", "onnx"]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while "listening on" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"pneumoscan dicom-node did not start:\n{log.read_text()}")
        time.sleep(0.3)
    return Node(process, port, log, spool)


def upload(orthanc: OrthancServer, path: Path) -> str:
    answer = httpx.post(orthanc.url + "/instances", content=path.read_bytes(), timeout=60)
    answer.raise_for_status()
    return str(answer.json()["ID"])


def result_instances(orthanc: OrthancServer, sop_class: str) -> list[Dataset]:
    """Every instance of ``sop_class`` in Orthanc, as datasets."""
    found = httpx.post(orthanc.url + "/tools/find", timeout=60,
                       json={"Level": "Instance", "Query": {"SOPClassUID": sop_class}})
    found.raise_for_status()
    return [pydicom.dcmread(io.BytesIO(httpx.get(f"{orthanc.url}/instances/{i}/file",
                                                 timeout=60).content))
            for i in found.json()]


def wait_for_results(orthanc: OrthancServer, count: int) -> tuple[list[Dataset], list[Dataset]]:
    deadline = time.monotonic() + RESULTS_TIMEOUT_S
    while True:
        reports = result_instances(orthanc, ComprehensiveSRStorage)
        captures = [c for c in result_instances(orthanc, SecondaryCaptureImageStorage)
                    if "SourceImageSequence" in c]  # not the SIIM sources, also SC
        if len(reports) >= count and len(captures) >= count:
            return reports, captures
        if time.monotonic() > deadline:
            pytest.fail(f"{len(reports)} SR and {len(captures)} SC of {count} arrived")
        time.sleep(0.5)


def test_orthanc_listens_on_loopback_only(pacs: tuple[OrthancServer, Node]) -> None:
    orthanc, node = pacs
    assert listening_addresses(orthanc.dicom_port) == {"127.0.0.1"}
    assert listening_addresses(orthanc.http_port) == {"127.0.0.1"}
    assert listening_addresses(node.port) == {"127.0.0.1"}


def test_orthanc_sends_the_shared_dicoms_and_gets_results_back(
        pacs: tuple[OrthancServer, Node], dicom_dir: Path, onnx_predictor: Predictor) -> None:
    orthanc, _ = pacs
    expected: dict[str, Prediction] = {}  # source SOP Instance UID -> its prediction
    ids = []
    for path in sorted(dicom_dir.glob("*.dcm")):
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        ids.append(upload(orthanc, path))
        # Two shared files share a UID: Orthanc keeps the first one uploaded.
        decoded = onnx_predictor.decode(path)  # as every face decodes
        expected.setdefault(uid, onnx_predictor.predict_decoded([decoded], heatmap=False)[0])
    sent = httpx.post(f"{orthanc.url}/modalities/pneumoscan/store", timeout=300,
                      json={"Resources": sorted(set(ids)), "Synchronous": True})
    assert sent.status_code == 200, sent.text
    reports, captures = wait_for_results(orthanc, len(expected))
    assert len(reports) == len(captures) == len(expected)
    for report in reports:
        evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
        source_uid = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
            .ReferencedSOPInstanceUID
        finding = expected[source_uid].meaning.finding
        if finding is None:  # the shared films are adults': no finding is coded
            assert finding_in(report) is None
            assert model_output_in(report) == (expected[source_uid].meaning.model_output_note
                                               or None)
        else:
            assert probability_in(report) == pytest.approx(finding.probability, abs=1e-5)
            present = codes.PRESENT if finding.positive else codes.ABSENT
            assert finding_in(report) == present.value
        assert report.StudyInstanceUID == evidence.StudyInstanceUID
    sources = {c.SourceImageSequence[0].ReferencedSOPInstanceUID for c in captures}
    assert sources == set(expected)


def hostile_files(folder: Path, source: Path) -> dict[str, Path]:
    """A dataset without pixels, one whose JPEG data is noise, one in MPEG-2."""
    original = pydicom.dcmread(source)

    def variant() -> Dataset:
        dataset = deepcopy(original)
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        return dataset

    files = {}
    no_pixels = variant()
    del no_pixels.PixelData
    corrupt = variant()
    corrupt.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8])
    video = variant()
    video.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2 MP@ML
    for name, dataset in (("no_pixels", no_pixels), ("corrupt", corrupt), ("video", video)):
        files[name] = folder / f"{name}.dcm"
        dataset.save_as(files[name])
    return files


def storescu(node: Node, path: Path, *options: str) -> str:
    done = subprocess.run(["storescu", "-v", "-aet", "STORESCU", "-aec", "PNEUMOSCAN",
                           *options, "127.0.0.1", str(node.port), str(path)],
                          capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def test_storescu_hostile_files_get_failures_and_the_node_keeps_working(
        pacs: tuple[OrthancServer, Node], dicom_dir: Path, tmp_path: Path) -> None:
    orthanc, node = pacs
    files = hostile_files(tmp_path, dicom_dir / "cr_siim_pa_jpeg_baseline.dcm")
    assert "Store Response (Error: DataSetDoesNotMatchSOPClass)" in \
        storescu(node, files["no_pixels"])
    assert "Store Response (Error: CannotUnderstand)" in \
        storescu(node, files["corrupt"], "-xy")  # propose JPEG baseline
    assert "No Acceptable Presentation Contexts" in storescu(node, files["video"], "-xm")
    before = len(result_instances(orthanc, ComprehensiveSRStorage))
    good = tmp_path / "good.dcm"
    dataset = pydicom.dcmread(dicom_dir / "cr_nema_pa_monochrome1_jpegls.dcm")
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.save_as(good)
    assert "Store Response (Success)" in storescu(node, good, "-xu")  # JPEG-LS near-lossless
    wait_for_results(orthanc, before + 1)
    log = node.log.read_text()
    assert "refused with 0xA900" in log and "refused with 0xC100" in log
    assert dataset.PatientID not in log and str(dataset.PatientName) not in log


def test_sigterm_finishes_and_reports(pacs: tuple[OrthancServer, Node]) -> None:
    _, node = pacs
    os.kill(node.process.pid, signal.SIGTERM)
    assert node.process.wait(120) == 0
    log = node.log.read_text()
    assert "0 spooled, 0 lost" in log
    assert not node.spool.exists()


@pytest.fixture
def routing_pacs(tmp_path: Path) -> Iterator[tuple[OrthancServer, Node]]:
    """Orthanc running the README's routing script, and a node it routes to."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    node_port = free_port()
    with running_orthanc(tmp_path / "orthanc", dicom_port=free_port(), http_port=free_port(),
                         modalities={"pneumoscan": ("PNEUMOSCAN", "127.0.0.1", node_port)},
                         lua_scripts=(ROUTE_SCRIPT,)) as orthanc:
        node = start_node(tmp_path, node_port, orthanc)
        try:
            yield orthanc, node
        finally:
            node.process.kill()
            node.process.wait(10)


def test_orthanc_routes_new_radiographs_by_itself(routing_pacs: tuple[OrthancServer, Node],
                                                  dicom_dir: Path) -> None:
    """A CR and a DX uploaded to Orthanc reach the node through the Lua script alone; the
    results coming back (SR, OT) are not sent round again."""
    orthanc, node = routing_pacs
    for name in ("cr_ap_256px_monochrome1.dcm", "dx_nih_no_finding.dcm"):
        upload(orthanc, dicom_dir / name)
    reports, captures = wait_for_results(orthanc, 2)
    assert len(reports) == len(captures) == 2
    time.sleep(2)  # a result routed round would reach the node by now
    assert node.log.read_text().count("results queued") == 2
