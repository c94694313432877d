"""A pneumoscan server for a benchmark: the one helper every script starts it with.

:func:`running_server` runs a command that takes ``--host`` and ``--port`` (``pneumoscan
serve`` itself, or a script that serves the same application with timers attached) in a
process of its own on a free loopback port, waits until ``/api/v1/health`` answers, and
stops it with SIGTERM afterwards (uvicorn then shuts down cleanly). The benchmark's client
runs in the calling process: a server and its client never share an interpreter lock.

:func:`test_helper` loads a helper module of ``tests/`` (the hostile files, a process's
memory), so that the benchmarks and the tests measure with one definition.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]

#: ``pneumoscan serve``, as a deployment runs it.
SERVE = [sys.executable, "-m", "pneumoscan", "serve"]


@dataclass(frozen=True)
class RunningServer:
    url: str
    port: int
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/api/v1/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextmanager
def running_server(command: list[str], *, env: dict[str, str] | None = None,
                   start_timeout_s: float = 300.0) -> Iterator[RunningServer]:
    """``command --host 127.0.0.1 --port PORT`` in a child process, healthy, until the
    ``with`` block ends. ``env`` adds to this process's environment (``PNEUMOSCAN_*``)."""
    port = free_port()
    full = [*command, "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(full, env={**os.environ, **(env or {})}, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + start_timeout_s
            while not is_healthy(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"the server did not start ({' '.join(full)}):\n"
                                     f"{log.read()[-3000:]}")
                time.sleep(0.2)
            yield RunningServer(f"http://127.0.0.1:{port}", port, process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_helper(name: str) -> ModuleType:
    """The module ``tests/NAME.py`` (the tests folder is not a package on the path here)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: ``memory_mb(pid)``: VmRSS and VmHWM of a process, MB; ``reset_peak(pid)``: VmHWM := VmRSS.
_process_memory = test_helper("process_memory")
memory_mb = _process_memory.memory_mb
reset_peak = _process_memory.reset_peak
tree_memory_mb = _process_memory.tree_memory_mb
reset_tree_peak = _process_memory.reset_tree_peak
