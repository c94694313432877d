"""The node's settings: options and PNEUMOSCAN_DICOM_* variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pneumoscan.dicom_node.settings import Destination, DicomNodeSettings, check_ae_title


def test_destination_parses_ae_host_port() -> None:
    assert Destination.parse("ORTHANC@127.0.0.1:4242") == Destination("ORTHANC", "127.0.0.1",
                                                                      4242)
    assert Destination.parse("PACS@[::1]:104").host == "::1"
    assert str(Destination.parse(" PACS @pacs.local:104")) == "PACS@pacs.local:104"


@pytest.mark.parametrize("text", ["ORTHANC", "ORTHANC@host", "@host:104", "A@h:0",
                                  "A@h:70000", "WAY_TOO_LONG_AE_TITLE@h:104"])
def test_destination_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        Destination.parse(text)


def test_ae_titles() -> None:
    assert check_ae_title(" CR01 ") == "CR01"
    for bad in ("", "A\\B", "X" * 17):
        with pytest.raises(ValueError):
            check_ae_title(bad)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMOSCAN_DICOM_SEND_TO", "ORTHANC@127.0.0.1:4242")
    monkeypatch.setenv("PNEUMOSCAN_DICOM_ALLOW_AE", "ORTHANC, CR01")
    monkeypatch.setenv("PNEUMOSCAN_DICOM_PORT", "11113")
    settings = DicomNodeSettings()
    assert settings.allow_ae == ["ORTHANC", "CR01"]
    assert settings.port == 11113 and settings.host == "127.0.0.1"
    assert settings.destination == Destination("ORTHANC", "127.0.0.1", 4242)


def test_settings_need_a_valid_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PNEUMOSCAN_DICOM_SEND_TO", raising=False)
    with pytest.raises(ValidationError):
        DicomNodeSettings()
    with pytest.raises(ValidationError, match="AE@HOST:PORT"):
        DicomNodeSettings(send_to="ORTHANC:4242")
