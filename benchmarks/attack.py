"""Attacks on the web server, the DICOM node and the CLI: does each hold, at what memory,
and do normal predictions keep flowing meanwhile?

Starts ``pneumoscan serve`` and ``pneumoscan dicom-node`` (shipped model, ONNX Runtime) on
127.0.0.1, and runs ``pneumoscan predict``, each in a process of its own. For every attack
it prints the answer, the target's peak resident memory during it (``VmHWM``, reset through
``/proc/PID/clear_refs`` before each attack; the CLI's polled until it exits), the time, and how
many normal predictions, sent one after another throughout, succeeded. Memory at rest is
the target's resident memory after a warm-up, and again after all its attacks. The node's
figures are those of the node and its prediction processes together (each process's peak,
summed).

    python benchmarks/attack.py                 # everything (about 3 minutes)
    python benchmarks/attack.py --only server   # or node, cli

The hostile files come from tests/hostile_files.py (the same the tests send).
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving import (
    ROOT,
    SERVE,
    free_port,
    memory_mb,
    reset_peak,
    reset_tree_peak,
    running_server,
    test_helper,
    tree_memory_mb,
)

SHARED = ROOT.parent / "shared" / "data"
NORMAL_JPEG = sorted((SHARED / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
SOURCE_DICOM = SHARED / "dicom" / "cr_siim_pa_jpeg_baseline.dcm"
PREDICT = "/api/v1/predict"
#: The server's body timeout during the run (the default is 30 s; shorter keeps it brief).
BODY_TIMEOUT_S = 10


hostile = test_helper("hostile_files")


@dataclass
class Row:
    target: str
    attack: str
    status: str
    peak_mb: float
    seconds: float
    normal: str  # "ok/total" normal predictions during the attack, or "-"


@dataclass
class Flow:
    """Normal predictions sent one after another on a thread: how many, how many ok."""

    send: Callable[[], bool]
    ok: int = 0
    total: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[Flow]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                good = self.send()
            except Exception:
                good = False
            self.total += 1
            self.ok += good
            self._stop.wait(0.2)

    def __str__(self) -> str:
        return f"{self.ok}/{self.total}"


# --- the web server ------------------------------------------------------------------------

def form(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = "attackboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(port: int, data: bytes, name: str, headers: dict[str, str] | None = None,
         timeout_s: float = 120.0) -> int:
    body, content_type = form(data, name)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("POST", PREDICT, body=body,
                           headers={"Content-Type": content_type, **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def trickle(port: int, seconds: float) -> str:
    """A body sent a byte every 0.5 s; the status line the server ended it with."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 30) as sock:
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     "Content-Length: 100000\r\n\r\n".encode())
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                sock.sendall(b"\x89")
                time.sleep(0.5)
                sock.setblocking(False)
                try:
                    answer = sock.recv(200)
                except BlockingIOError:
                    answer = b""
                finally:
                    sock.setblocking(True)
                if answer:
                    return answer.split(b"\r\n")[0].decode()
        except OSError as exc:
            return f"closed ({exc.__class__.__name__})"
    return "no answer"


def hang_up(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     "Content-Length: 100000\r\n\r\n".encode() + b"\x89PNG" * 100)


def server_attacks(rows: list[Row], rest: dict[str, tuple[float, float]]) -> None:
    normal = NORMAL_JPEG.read_bytes()
    with running_server([*SERVE, "--backend", "onnx"],
                        env={"PNEUMOSCAN_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}) as server:
        port, pid = server.port, server.pid
        for _ in range(5):
            post(port, normal, "warm.jpeg")
        time.sleep(1)
        start = memory_mb(pid)["VmRSS"]

        def attack(name: str, run: Callable[[], str]) -> None:
            flow = Flow(lambda: post(port, normal, "n.jpeg", timeout_s=30) == 200)
            reset_peak(pid)
            started = time.perf_counter()
            with flow.running():
                status = run()
                time.sleep(0.5)
            rows.append(Row("server", name, status, memory_mb(pid)["VmHWM"],
                            time.perf_counter() - started, str(flow)))

        attack("deflate bomb, 1 MB -> 1 GiB",
               lambda: str(post(port, hostile.deflate_bomb(1 << 30), "d.dcm")))
        attack("frame bomb, 40 x 4000^2 J2K (9 KB)",
               lambda: str(post(port, hostile.frame_bomb(40, 4000), "f.dcm")))
        attack("16-bit PNG 7000^2 (111 KB)",
               lambda: str(post(port, hostile.png16(7000), "p.png")))
        attack("cross-origin no-cors form post",
               lambda: str(post(port, normal, "x.jpeg", {"Origin": "https://evil.example",
                                                         "Sec-Fetch-Site": "cross-site"})))

        def slow_bodies() -> str:
            results: list[str] = []
            threads = [threading.Thread(target=lambda: results.append(
                trickle(port, BODY_TIMEOUT_S + 10))) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return " / ".join(sorted(r.removeprefix("HTTP/1.1 ") for r in results))

        attack(f"2 slow bodies, 1 B / 0.5 s (timeout {BODY_TIMEOUT_S} s)", slow_bodies)

        def hang_ups() -> str:
            for _ in range(20):
                hang_up(port)
            return "20 dropped"

        attack("20 clients hang up mid-upload", hang_ups)
        time.sleep(2)
        rest["server"] = (start, memory_mb(pid)["VmRSS"])


# --- the DICOM node ------------------------------------------------------------------------

def node_attacks(rows: list[Row], rest: dict[str, tuple[float, float]]) -> None:
    import pydicom
    from pydicom.uid import (
        ComputedRadiographyImageStorage,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        generate_uid,
    )
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    sink_port, node_port = free_port(), free_port()
    sink = AE(ae_title="SINK")
    sink.supported_contexts = AllStoragePresentationContexts
    stored: list[int] = []

    def store_result(event: Any) -> int:
        stored.append(1)
        return 0x0000

    sink_server = sink.start_server(("127.0.0.1", sink_port), block=False,
                                    evt_handlers=[(evt.EVT_C_STORE, store_result)])
    assert sink_server is not None  # block=False returns the running server

    def film() -> pydicom.Dataset:
        copy = pydicom.dcmread(SOURCE_DICOM)
        copy.SOPInstanceUID = generate_uid()
        copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
        return copy

    def store(dataset: pydicom.Dataset, syntax: str = JPEGBaseline8Bit) -> str:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(dataset.SOPClassUID, syntax)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        association = ae.associate("127.0.0.1", node_port, ae_title="PNEUMOSCAN")
        if not association.is_established:
            return "association refused"
        try:
            if not association.accepted_contexts:
                return "syntax refused at negotiation"
            status = association.send_c_store(dataset)
            return f"0x{int(status.Status):04X}" if "Status" in status else "no status"
        finally:
            if association.is_established:
                association.release()

    with tempfile.TemporaryDirectory() as spool, running_node(
            node_port, f"SINK@127.0.0.1:{sink_port}", Path(spool)) as (pid, _):
        for _ in range(3):
            store(film())
        time.sleep(1)
        start = tree_memory_mb(pid)

        def attack(name: str, run: Callable[[], str]) -> None:
            flow = Flow(lambda: store(film()) == "0x0000")
            reset_tree_peak(pid)
            started = time.perf_counter()
            with flow.running():
                status = run()
                time.sleep(0.5)
            rows.append(Row("node", name, status, tree_memory_mb(pid, "VmHWM"),
                            time.perf_counter() - started, str(flow)))

        bomb = pydicom.dcmread(io.BytesIO(hostile.frame_bomb(40, 4000)))
        attack("frame bomb, 40 x 4000^2 J2K (9 KB)", lambda: store(bomb, JPEG2000Lossless))
        deflated = pydicom.dcmread(io.BytesIO(hostile.deflate_bomb(256 << 20)))
        attack("deflate bomb (Deflated syntax offered)",
               lambda: store(deflated, DeflatedExplicitVRLittleEndian))

        def squat() -> str:
            silent = [socket.create_connection(("127.0.0.1", node_port)) for _ in range(4)]
            idle = []
            for _ in range(4):
                ae = AE(ae_title="MODALITY")
                ae.add_requested_context(ComputedRadiographyImageStorage,
                                         ExplicitVRLittleEndian)
                ae.network_timeout = 120
                idle.append(ae.associate("127.0.0.1", node_port, ae_title="PNEUMOSCAN"))
            time.sleep(6)  # the idle ones pass idle_after_s (5 s)
            began = time.perf_counter()
            status = store(film())
            for sock in silent:
                sock.close()
            for association in idle:
                if association.is_established:
                    association.abort()
            return f"{status} after {time.perf_counter() - began:.1f} s"

        attack("4 silent TCP + 4 idle associations, then a sender", squat)
        bad = film()
        for keyword, value in (("StudyDate", "2024-01-02"), ("StudyTime", "12:30:00"),
                               ("PatientAge", "62"), ("PatientIdentityRemoved", "Yes")):
            setattr(bad, keyword, value)
        attack("non-conformant dates, time, AS, CS", lambda: store(bad))
        time.sleep(2)
        rest["node"] = (start, tree_memory_mb(pid))

    # Shutdown while the destination accepts TCP but never answers.
    hung = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def hold_connections() -> None:
        for _ in range(100):
            held.append(hung.accept()[0])

    threading.Thread(target=hold_connections, daemon=True).start()
    with tempfile.TemporaryDirectory() as spool:
        started = time.perf_counter()
        with running_node(node_port, f"HUNG@127.0.0.1:{hung.getsockname()[1]}",
                          Path(spool), {"PNEUMOSCAN_DICOM_SHUTDOWN_TIMEOUT_S": "10"}
                          ) as (pid, log):
            statuses = [store(film()) for _ in range(4)]
            reset_tree_peak(pid)
            started = time.perf_counter()
            peak = tree_memory_mb(pid, "VmHWM")
        seconds = time.perf_counter() - started
        line = next((m.group(1) for m in re.finditer(r"stopped: .*?; (.*)", log.read_text())),
                    "no stop line")
        if os.environ.get("ATTACK_SHOW_NODE_LOG"):
            print(log.read_text()[-4000:], file=sys.stderr)
        files = len(list(Path(spool).glob("*.dcm")))
        rows.append(Row("node", "SIGTERM, destination hung (shutdown 10 s)",
                        f"{statuses.count('0x0000')}/4 stored; {line}; {files} files",
                        peak, seconds, "-"))
    hung.close()
    sink_server.shutdown()


@contextmanager
def running_node(port: int, send_to: str, spool: Path, env: dict[str, str] | None = None,
                 ) -> Iterator[tuple[int, Path]]:
    """``pneumoscan dicom-node`` in a child process; ``(pid, log file)``; SIGTERM at the
    end, waited for."""
    log = spool.parent / f"node-{port}-{time.monotonic_ns()}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pneumoscan", "dicom-node", "--send-to", send_to,
             "--port", str(port), "--spool-dir", str(spool), "--backend", "onnx"],
            stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + 300
            while "listening on" not in log.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the node did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield process.pid, log
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=180)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- the CLI ---------------------------------------------------------------------------------

def cli_attacks(rows: list[Row]) -> None:
    """``pneumoscan predict FILE normal.jpeg --out rows.csv``, one run per hostile file, and
    one with the normal film alone for the baseline peak."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        files = {"normal film alone (baseline)": (None, b""),
                 "deflate bomb, 1 MB -> 1 GiB": ("bomb.dcm", hostile.deflate_bomb(1 << 30)),
                 "frame bomb, 40 x 4000^2 J2K (9 KB)": ("frames.dcm",
                                                       hostile.frame_bomb(40, 4000)),
                 "16-bit PNG 7000^2 (111 KB)": ("deep.png", hostile.png16(7000)),
                 "formula file name": ("=HYPERLINK(1).jpeg", NORMAL_JPEG.read_bytes())}
        for index, (attack, (name, data)) in enumerate(files.items()):
            inputs = work / str(index)
            inputs.mkdir()
            shutil.copy(NORMAL_JPEG, inputs / "normal.jpeg")
            names = ["normal.jpeg"]
            if name is not None:
                (inputs / name).write_bytes(data)
                names.insert(0, name)
            out = work / f"{index}.csv"
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "pneumoscan", "predict", "--out", str(out),
                 "--backend", "onnx", "--", *names], cwd=inputs,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            peak = 0.0  # VmHWM polled: wait4's ru_maxrss counts the parent's memory at fork
            while process.poll() is None:
                with suppress(OSError, KeyError):
                    peak = max(peak, memory_mb(process.pid)["VmHWM"])
                time.sleep(0.02)
            seconds = time.perf_counter() - started
            rows_out = list(csv.DictReader(out.open())) if out.exists() else []
            hostile_row = rows_out[0] if name is not None and rows_out else None
            if hostile_row is None:
                verdict = "-"
            elif hostile_row["error"]:
                verdict = "refused: " + hostile_row["error"][:48].replace("|", "/") + "..."
            elif (name or "").startswith("="):
                verdict = f"file cell {hostile_row['file'][:6]}..."
            else:
                verdict = "predicted"
            normal_ok = any(r["file"].endswith("normal.jpeg") and r["label"]
                            for r in rows_out)
            rows.append(Row("cli", attack, f"rc {process.returncode}; {verdict}", peak, seconds,
                            "1/1" if normal_ok else "0/1"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["server", "node", "cli"])
    args = parser.parse_args()
    rows: list[Row] = []
    rest: dict[str, tuple[float, float]] = {}
    if args.only in (None, "server"):
        server_attacks(rows, rest)
    if args.only in (None, "node"):
        node_attacks(rows, rest)
    if args.only in (None, "cli"):
        cli_attacks(rows)
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| target | attack | answer | peak RSS (MB) | time (s) | normal predictions ok |")
    print("|---|---|---|---:|---:|---|")
    for row in rows:
        print(f"| {row.target} | {row.attack} | {row.status} | {row.peak_mb:.0f} | "
              f"{row.seconds:.1f} | {row.normal} |")
    for target, (start, end) in rest.items():
        print(f"\n{target}: memory at rest {start:.0f} MB after warm-up, {end:.0f} MB after "
              f"the attacks ({(end - start) / start:+.0%})")


if __name__ == "__main__":
    main()
