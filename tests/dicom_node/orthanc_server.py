"""A real Orthanc (Debian's package) for the tests: temporary configuration and storage,
free ports, listening on 127.0.0.1 only, stopped afterwards.

Orthanc 1.10 has no option for the address it listens on, so it runs with a small
LD_PRELOAD shim (``bind_loopback.c``, built here with the system C compiler) that turns its
wildcard binds into loopback binds; :func:`listening_addresses` lets the tests check it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ORTHANC = "Orthanc"
SHIM_SOURCE = Path(__file__).with_name("bind_loopback.c")
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class OrthancServer:
    ae_title: str
    dicom_port: int
    http_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def address(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.dicom_port}"


def missing_tools() -> str:
    """Why Orthanc cannot be run here ("" when it can)."""
    for tool, package in ((ORTHANC, "orthanc"), ("storescu", "dcmtk"), ("cc", "gcc")):
        if shutil.which(tool) is None:
            return f"{tool} not found: run `make dicom-tools` (apt-get install {package})"
    return ""


def build_shim(folder: Path) -> Path:
    library = folder / "bind_loopback.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM_SOURCE),
                    "-ldl"], check=True, capture_output=True, timeout=60)
    return library


@contextmanager
def running_orthanc(folder: Path, *, dicom_port: int, http_port: int,
                    modalities: dict[str, tuple[str, str, int]],
                    lua_scripts: tuple[Path, ...] = ()) -> Iterator[OrthancServer]:
    """Orthanc with its storage in ``folder``, ``modalities`` (name: AE, host, port) and
    ``lua_scripts`` run on its events."""
    storage = folder / "storage"
    storage.mkdir(parents=True)
    config = {
        "Name": "pneumoscan-tests", "StorageDirectory": str(storage),
        "IndexDirectory": str(storage), "HttpPort": http_port, "DicomPort": dicom_port,
        "DicomAet": "ORTHANC", "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [], "DicomCheckModalityHost": True, "DicomScuTimeout": 120,
        "DicomModalities": {name: list(value) for name, value in modalities.items()},
        "StorageCompression": False, "LimitFindResults": 0,
        "LuaScripts": [str(script) for script in lua_scripts],
    }
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    environment = {"LD_PRELOAD": str(build_shim(folder)), "PATH": "/usr/bin:/usr/sbin:/bin"}
    log_path = folder / "orthanc.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([shutil.which(ORTHANC) or ORTHANC, str(config_path)],
                                   stdout=log, stderr=subprocess.STDOUT, env=environment)
    server = OrthancServer("ORTHANC", dicom_port, http_port)
    try:
        _wait_until_up(server, process, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_until_up(server: OrthancServer, process: subprocess.Popen[bytes],
                   log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited early:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/system", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"Orthanc did not answer in {START_TIMEOUT_S} s")


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net)."""
    addresses = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port and len(address) == width:
                addresses.add(_address(address))
    return addresses


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]  # little-endian 32-bit words
    return ":".join(b"".join(words)[i:i + 2].hex() for i in range(0, 16, 2))
