"""The systemd units in deploy/systemd: they verify (``systemd-analyze verify``, where
systemd is installed) and hold the confinement the README promises: a dynamic unprivileged
user, a read-only system, the node's spool the one writable folder, restart on failure and
an environment file for the ``PNEUMOSCAN_*`` settings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
NAMES = ("pneumoscan-web.service", "pneumoscan-dicom-node.service")
INSTALLED = "/opt/pneumoscan/.venv-runtime/bin/pneumoscan"


def service_section(name: str) -> dict[str, list[str]]:
    """The [Service] keys of a unit, each with every value it is given."""
    values: dict[str, list[str]] = {}
    text = (UNITS / name).read_text()
    for line in text.split("[Service]", 1)[1].split("[Install]", 1)[0].splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.parametrize("name", NAMES)
def test_units_are_confined(name: str) -> None:
    service = service_section(name)
    assert service["DynamicUser"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]  # all of / read-only but the API folders
    assert service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"][0].startswith("-/etc/pneumoscan/")
    assert service["ExecStart"][0].startswith(INSTALLED + " ")
    assert service["CapabilityBoundingSet"] == [""]
    assert "ReadWritePaths" not in service
    if name == "pneumoscan-dicom-node.service":
        assert service["StateDirectory"] == ["pneumoscan-dicom-node"]
        assert "PNEUMOSCAN_DICOM_SPOOL_DIR=%S/pneumoscan-dicom-node/spool" in \
            service["Environment"]
    else:
        assert "StateDirectory" not in service  # the web app keeps nothing


def verify(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no",
                           *(str(folder / n) for n in NAMES)],
                          capture_output=True, text=True, timeout=120, check=False)


def installed_copies(folder: Path, extra: str = "") -> Path:
    """The units with ExecStart pointing at this environment's ``pneumoscan`` (verify
    checks that the program exists), plus ``extra`` lines in [Service]."""
    program = Path(sys.prefix) / "bin" / "pneumoscan"
    if not program.exists():
        pytest.skip(f"{program} is not installed (pip install -e .)")
    for name in NAMES:
        text = (UNITS / name).read_text().replace(INSTALLED, str(program))
        (folder / name).write_text(text.replace("[Service]\n", "[Service]\n" + extra))
    return folder


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not "
                    "installed here (systemd-analyze not found)")
def test_units_verify(tmp_path: Path) -> None:
    result = verify(installed_copies(tmp_path))
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if any(name in line for name in NAMES)]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not "
                    "installed here (systemd-analyze not found)")
def test_verify_catches_a_bad_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt setting is reported."""
    result = verify(installed_copies(tmp_path, "ProtectSystems=strict\n"))
    assert "ProtectSystems" in result.stdout + result.stderr
