"""Bounded load run of the DICOM node: N radiographs over C concurrent associations.

Starts ``pneumoscan dicom-node`` on 127.0.0.1 (a child process, the shipped model unless
``--model``), and in this process a Storage SCP standing in for the PACS, where the results
go. Sends the six shared DICOMs round-robin, each copy a new SOP instance, then waits for
an SR and a heat-map Secondary Capture per image. Prints images/s (first send to last
result), the C-STORE statuses and the lost count (images without both results); the exit
status is 1 when any image is lost or refused. It also prints the largest Secondary Capture
that arrived, the node's warnings, and the CPU time the node spent per image (and this
process, the PACS stand-in and the senders): on a machine shared with other work, images/s
follows the load, CPU time per image much less.

The PACS stand-in accepts JPEG baseline, JPEG-LS lossless and uncompressed images, as
Orthanc and most PACS do; ``--pacs-uncompressed-only`` makes it accept uncompressed data
only (the worst case: the node decodes its JPEG capture and sends 3.9 MB for each image).

The six shared DICOMs are adults' films: every result is "not applicable" and its capture
shows the radiograph without a heat map. ``--children`` sends six children's films instead,
the node's intended input: training films of ``../shared/data/chest_xray/train`` (224 px,
no header) enlarged to 1,024 px and wrapped as CR images of a 3-year-old, three as JPEG
baseline and three uncompressed, so that every result applies and every capture carries
the heat-map overlay.

    python benchmarks/dicom_load.py --images 100 --associations 4 [--children]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from copy import deepcopy
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    generate_uid,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt

from pneumoscan.dicom_node.intake import ACCEPTED_SOP_CLASSES
from pneumoscan.result_meaning import NOT_APPLICABLE
from serving import ROOT, free_port, test_helper

DEFAULT_DICOM_DIR = ROOT.parent / "shared" / "data" / "dicom"
TRAIN_DIR = ROOT.parent / "shared" / "data" / "chest_xray" / "train"
#: The training films ``--children`` sends (three pneumonia, three normal).
CHILDREN_FILMS = ("PNEUMONIA/person1000_bacteria_2931.jpeg", "NORMAL/IM-0115-0001.jpeg",
                  "PNEUMONIA/person1000_virus_1681.jpeg", "NORMAL/IM-0117-0001.jpeg",
                  "PNEUMONIA/person1001_bacteria_2932.jpeg", "NORMAL/IM-0119-0001.jpeg")
CHILD_FILM_SIDE = 1024

hostile = test_helper("hostile_files")  # its radiograph header and DICOM file writer
START_TIMEOUT_S = 180


class ResultSink:
    """The stand-in PACS: counts the SR and the heat map that arrive for each source."""

    def __init__(self) -> None:
        self.reports: set[str] = set()  # source SOP Instance UIDs with an SR
        self.captures: set[str] = set()  # ... with a Secondary Capture
        self.largest_capture = (0, "")  # bytes as received, transfer syntax
        self.last_arrival = 0.0
        self.lock = threading.Lock()

    def handle(self, event: Any) -> int:
        dataset = event.dataset
        if dataset.SOPClassUID == ComprehensiveSRStorage:
            evidence = dataset.CurrentRequestedProcedureEvidenceSequence[0]
            source = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
            target = self.reports
        else:
            source = dataset.SourceImageSequence[0]
            target = self.captures
            size = len(event.request.DataSet.getvalue())
            with self.lock:
                self.largest_capture = max(self.largest_capture,
                                           (size, event.context.transfer_syntax.name))
        with self.lock:
            target.add(str(source.ReferencedSOPInstanceUID))
            self.last_arrival = time.perf_counter()
        return 0x0000

    def complete(self, sources: set[str]) -> set[str]:
        with self.lock:
            return sources & self.reports & self.captures


def copies(folder: Path, count: int) -> list[Dataset]:
    """``count`` datasets cycling over the DICOMs in ``folder``, each a new instance."""
    originals = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    if not originals:
        sys.exit(f"no .dcm files in {folder}")
    datasets: list[Dataset] = []
    for index in range(count):
        dataset = deepcopy(originals[index % len(originals)])
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        datasets.append(dataset)
    return datasets


def write_children_films(train_dir: Path, folder: Path) -> Path:
    """:data:`CHILDREN_FILMS` as CR DICOMs of a 3-year-old in ``folder`` (made here: the
    training films are JPEGs without a header); the even ones JPEG baseline, the odd ones
    uncompressed."""
    folder.mkdir()
    for index, name in enumerate(CHILDREN_FILMS):
        if not (train_dir / name).is_file():
            sys.exit(f"{train_dir / name} is missing: --children needs the shared training "
                     "films")
        with Image.open(train_dir / name) as film:
            grey = film.convert("L").resize((CHILD_FILM_SIDE, CHILD_FILM_SIDE),
                                            Image.Resampling.BICUBIC)
        dataset = hostile.radiograph_header(CHILD_FILM_SIDE, CHILD_FILM_SIDE, bits=8)
        dataset.PatientName, dataset.PatientAge = f"Load^Child{index}", "003Y"
        dataset.ViewPosition = "AP"
        if index % 2 == 0:
            encoded = BytesIO()
            grey.save(encoded, "JPEG", quality=90)
            dataset.PixelData = encapsulate([encoded.getvalue()])
            dataset["PixelData"].VR = "OB"
            dataset.LossyImageCompression = "01"
            syntax = JPEGBaseline8Bit
        else:
            dataset.PixelData = np.asarray(grey).tobytes()
            syntax = ExplicitVRLittleEndian
        (folder / f"child_{index}.dcm").write_bytes(hostile.part10(dataset, syntax))
    return folder


def send_share(datasets: list[Dataset], port: int, statuses: Counter[str]) -> None:
    """One association: C-STORE each dataset, one context per (SOP class, syntax)."""
    ae = AE(ae_title="LOADTEST")
    for timeout in ("acse_timeout", "dimse_timeout", "network_timeout"):
        setattr(ae, timeout, 300)
    pairs = {(d.SOPClassUID, d.file_meta.TransferSyntaxUID) for d in datasets}
    for sop_class, syntax in sorted(pairs):
        if sop_class in ACCEPTED_SOP_CLASSES:
            ae.add_requested_context(sop_class, syntax)
    association = ae.associate("127.0.0.1", port, ae_title="PNEUMOSCAN")
    if not association.is_established:
        statuses["association refused"] += len(datasets)
        return
    try:
        for dataset in datasets:
            status = association.send_c_store(dataset)
            statuses["no response" if "Status" not in status
                     else f"0x{int(status.Status):04X}"] += 1
    finally:
        association.release()


def start_node(port: int, sink_port: int, spool: Path, log: Path, model: Path | None,
               associations: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "pneumoscan", "dicom-node", "--port", str(port),
               "--send-to", f"SINK@127.0.0.1:{sink_port}", "--spool-dir", str(spool),
               "--max-associations", str(associations)]
    if model is not None:
        command += ["--model", str(model)]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while "listening on" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(f"the node did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--dicom-dir", type=Path, default=DEFAULT_DICOM_DIR)
    parser.add_argument("--children", action="store_true",
                        help="send six children's training films made into DICOMs (every "
                        "result applies) instead of the --dicom-dir films (adults)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for "
                        "the results")
    parser.add_argument("--pacs-uncompressed-only", action="store_true",
                        help="the PACS stand-in accepts uncompressed data only (default: "
                        "also JPEG baseline and JPEG-LS lossless, as Orthanc and most PACS "
                        "do), so the node decodes every heat-map capture it made as JPEG")
    args = parser.parse_args()

    sink = ResultSink()
    sink_ae = AE(ae_title="SINK")
    extra = [] if args.pacs_uncompressed_only else [JPEGBaseline8Bit, JPEGLSLossless]
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None  # every storage context names its class
        sink_ae.add_supported_context(context.abstract_syntax,
                                      [*context.transfer_syntax, *extra])
    sink_port, node_port = free_port(), free_port()
    server = sink_ae.start_server(("127.0.0.1", sink_port), block=False,
                                  evt_handlers=[(evt.EVT_C_STORE, sink.handle)])
    assert server is not None  # block=False returns the running server
    statuses: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as folder:
        films = write_children_films(TRAIN_DIR, Path(folder) / "children") \
            if args.children else args.dicom_dir
        datasets = copies(films, args.images)
        sources = {str(d.SOPInstanceUID) for d in datasets}
        log = Path(folder) / "node.log"
        node = start_node(node_port, sink_port, Path(folder) / "spool", log, args.model,
                          args.associations)
        shares = [datasets[i::args.associations] for i in range(args.associations)]
        threads = [threading.Thread(target=send_share, args=(share, node_port, statuses))
                   for share in shares]
        start = time.perf_counter()
        own_cpu = time.process_time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent_s = time.perf_counter() - start
        deadline = time.monotonic() + args.timeout
        while len(sink.complete(sources)) < len(sources) and time.monotonic() < deadline:
            time.sleep(0.1)
        wall_s = max(sink.last_arrival - start, sent_s)
        own_cpu = time.process_time() - own_cpu
        os.kill(node.pid, signal.SIGTERM)
        node.wait(300)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the node, start-up included
        node_cpu = usage.ru_utime + usage.ru_stime
        logged = log.read_text().splitlines()
        summary = [line for line in logged if "stopped:" in line]
        warnings = [line for line in logged if " WARNING " in line or " ERROR " in line]
        results = [line for line in logged if "results queued" in line]
        not_applicable = sum(NOT_APPLICABLE in line for line in results)
        spooled = len(list((Path(folder) / "spool").glob("*.dcm")))
    server.shutdown()

    complete = len(sink.complete(sources))
    lost = len(sources) - complete
    print(f"DICOM node load run: {args.images} images "
          f"({'children, 1,024 px' if args.children else 'the shared DICOMs, adults'}) over "
          f"{args.associations} associations ({platform.node()}, {os.cpu_count()} CPUs); "
          "the PACS stand-in "
          f"accepts {'JPEG baseline, JPEG-LS lossless and ' if extra else ''}uncompressed")
    print(f"C-STORE statuses: {dict(statuses)}")
    print(f"sent in {sent_s:.1f} s; last result after {wall_s:.1f} s")
    print(f"throughput: {complete / wall_s:.2f} images/s (SR + heat map delivered each)")
    print(f"complete: {complete}  lost: {lost}  spooled files: {spooled}")
    print(f"results: {len(results) - not_applicable} apply (heat map in the capture), "
          f"{not_applicable} not applicable (the radiograph alone)")
    size, syntax = sink.largest_capture
    print(f"largest Secondary Capture received: {size / 1024:.0f} KB ({syntax})")
    print(f"CPU: node {node_cpu:.1f} s ({1000 * node_cpu / args.images:.0f} ms per image, "
          f"start-up included); PACS stand-in and senders {own_cpu:.1f} s "
          f"({1000 * own_cpu / args.images:.0f} ms per image)")
    print(summary[-1].split(": ", 1)[-1] if summary else "the node wrote no summary")
    print(f"node warnings and errors: {len(warnings)}")
    for line in warnings[:5]:
        print(f"  {line}")
    refused = sum(n for status, n in statuses.items() if status != "0x0000")
    return 1 if lost or refused else 0


if __name__ == "__main__":
    sys.exit(main())
