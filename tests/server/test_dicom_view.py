"""A DICOM upload's identity and full-depth values in the response: what the header says,
the modality-LUT values back from the 16-bit PNG, and none of it in a log record."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumoscan.server.dicom_view import display_values, patient_identity, window_presets


def test_identity_is_read_from_the_header(dicom_dir: Path) -> None:
    dataset = pydicom.dcmread(dicom_dir / "cr_nema_pa_monochrome1_jpegls.dcm",
                              stop_before_pixels=True)
    assert patient_identity(dataset) == {
        "name": "COMPRESSEDSAMPLES, RG1", "patient_id": "9RG1", "birth_date": "1940-03-05",
        "sex": "F", "accession_number": "exam Number", "study_date": "2004-08-26",
        "study_description": "THORAX"}


def test_display_values_are_the_modality_values_at_full_depth(dicom_dir: Path) -> None:
    path = dicom_dir / "cr_ap_256px_monochrome1.dcm"  # 256 px, 15 bits stored
    dataset = pydicom.dcmread(path)
    expected = pydicom.pixels.apply_modality_lut(dataset.pixel_array, dataset)
    display = display_values(path.read_bytes())
    assert display is not None and display.monochrome1
    png = Image.open(io.BytesIO(display.png))
    assert png.mode.startswith("I;16")  # 16 bits, not 8
    values = display.offset + display.scale * np.asarray(png, dtype=np.float64)
    assert np.array_equal(values, expected)
    assert len(np.unique(expected)) > 256  # more levels than an 8-bit rendering has
    assert display.presets[-1]["name"].startswith("Auto")


def test_presets_are_the_file_windows(dicom_dir: Path) -> None:
    dataset = pydicom.dcmread(dicom_dir / "cr_nema_pa_monochrome1_jpeg2000.dcm",
                              stop_before_pixels=True)
    assert window_presets(dataset) == [{"name": "File window 1", "center": 15000.0,
                                        "width": 30000.0}]
    dataset.WindowCenter, dataset.WindowWidth = [40, 400], [350, 1500]
    dataset.WindowCenterWidthExplanation = ["SOFT", "LUNG"]
    assert [p["name"] for p in window_presets(dataset)] == ["SOFT", "LUNG"]


def test_the_response_carries_them_and_no_log_does(
        client: TestClient, dicom_dir: Path, xray_jpeg: bytes,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    data = (dicom_dir / "cr_nema_pa_monochrome1_jpegls.dcm").read_bytes()
    body = client.post("/api/v1/predict?image=true",
                       files={"file": ("film.dcm", data)}).json()
    assert body["identity"]["patient_id"] == "9RG1"
    assert body["display"]["presets"][0] == {"name": "File window 1", "center": 15000.0,
                                             "width": 30000.0}
    assert Image.open(io.BytesIO(base64.b64decode(body["display"]["png"]))).size == (964,
                                                                                     1024)
    without_image = client.post("/api/v1/predict", files={"file": ("film.dcm", data)}).json()
    assert without_image["identity"]["name"] and without_image["display"] is None
    jpeg = client.post("/api/v1/predict?image=true",
                       files={"file": ("x.jpeg", xray_jpeg)}).json()
    assert jpeg["identity"] is None and jpeg["display"] is None
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for value in ("9RG1", "COMPRESSEDSAMPLES", "19400305", "1940-03-05", "exam Number"):
        assert value not in logged
