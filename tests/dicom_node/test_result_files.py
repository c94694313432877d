"""``pneumoscan predict --dicom-out``: the node's objects written offline, read back and
matched with the same run's JSON rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from pneumoscan.cli.main import app
from pneumoscan.dicom_node import codes
from pneumoscan.dicom_node.result_files import NotDicomError, read_header

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_dicom_out_round_trip(tmp_path: Path, dicom_dir: Path, shipped_model: Path,
                              shared_normal_images: list[Path]) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("dx_nih_no_finding.dcm", "cr_nema_pa_monochrome1_jpeg2000.dcm"):
        shutil.copy(dicom_dir / name, inputs / name)
    shutil.copy(shared_normal_images[0], inputs / "child.jpeg")  # no study: no DICOM result
    out = tmp_path / "results"
    rows_path = tmp_path / "rows.json"
    result = CliRunner().invoke(app, ["predict", str(inputs), "--dicom-out", str(out),
                                      "--out", str(rows_path), "--model", str(shipped_model),
                                      "--backend", "onnx"])
    assert result.exit_code == 0, result.output
    assert "2 DICOM result(s)" in result.output
    rows = {Path(row["file"]).name: row for row in json.loads(rows_path.read_text())}
    assert sorted(p.name for p in out.iterdir()) == [
        "cr_nema_pa_monochrome1_jpeg2000.heatmap.dcm", "cr_nema_pa_monochrome1_jpeg2000.sr.dcm",
        "dx_nih_no_finding.heatmap.dcm", "dx_nih_no_finding.sr.dcm"]
    for stem in ("dx_nih_no_finding", "cr_nema_pa_monochrome1_jpeg2000"):
        source = pydicom.dcmread(inputs / f"{stem}.dcm", stop_before_pixels=True)
        report = pydicom.dcmread(out / f"{stem}.sr.dcm")
        capture = pydicom.dcmread(out / f"{stem}.heatmap.dcm")
        row = rows[f"{stem}.dcm"]
        # Adults (their headers say so): no finding in the row, none coded in the SR, and
        # the model's output in the same words in both.
        assert row["applicable"] is False and row["label"] is None
        items = {item.ConceptNameCodeSequence[0].CodeValue: item
                 for item in report.ContentSequence}
        assert codes.PNEUMONIA.value not in items
        assert items[codes.APPLICABLE.value].ConceptCodeSequence[0].CodeValue == codes.NO.value
        assert items[codes.MODEL_OUTPUT.value].TextValue == row["model_output_note"]
        for result_object in (report, capture):
            assert result_object.StudyInstanceUID == source.StudyInstanceUID
            assert result_object.PatientID == source.PatientID
        assert capture.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert capture.pixel_array.ndim == 3


def test_read_header_refuses_other_files(shared_normal_images: list[Path]) -> None:
    with pytest.raises(NotDicomError, match="not a DICOM file"):
        read_header(shared_normal_images[0])
