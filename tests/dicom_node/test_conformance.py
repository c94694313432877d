"""Every SR and Secondary Capture the project writes passes dicom3tools' ``dciodvfy`` (a
validator independent of pydicom and highdicom) with no errors: for each shared DICOM, and
for a film whose header values break their value representations. ``make dicom-tools``
installs it (Debian's dicom3tools)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from pneumoscan.cli.main import app
from pneumoscan.dicom_node.results import build_results
from pneumoscan.predictor import Predictor

from .bad_values import bad_values_in, with_bad_values

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                 reason="dciodvfy not installed: run `make dicom-tools`")]

SHARED = ["cr_ap_256px_monochrome1.dcm", "cr_nema_pa_monochrome1_jpeg2000.dcm",
          "cr_nema_pa_monochrome1_jpegls.dcm", "cr_siim_pa_header_says_monochrome1.dcm",
          "cr_siim_pa_jpeg_baseline.dcm", "dx_nih_no_finding.dcm"]


def dciodvfy_errors(path: Path) -> list[str]:
    """The lines ``dciodvfy`` reports as errors for ``path`` (warnings are not errors)."""
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                          timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines()
            if line.startswith("Error")]


@pytest.mark.parametrize("name", SHARED)
def test_results_of_each_shared_dicom_pass_dciodvfy(name: str, dicom_dir: Path,
                                                   onnx_predictor: Predictor,
                                                   tmp_path: Path) -> None:
    source_path = dicom_dir / name
    source = pydicom.dcmread(source_path)
    for index, result in enumerate(build_results(source, onnx_predictor.predict(source_path))):
        path = tmp_path / f"{index}.dcm"
        result.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], f"{name} -> {result.SOPClassUID.name}"


def test_results_of_a_film_with_bad_values_pass_dciodvfy(source: pydicom.Dataset,
                                                         source_path: Path,
                                                         onnx_predictor: Predictor,
                                                         tmp_path: Path) -> None:
    film = with_bad_values(source)
    for index, result in enumerate(build_results(film, onnx_predictor.predict(source_path))):
        path = tmp_path / f"{index}.dcm"
        result.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], result.SOPClassUID.name
        assert "StudyDate" in result and not result.StudyDate  # Type 2: empty


def test_dicom_out_with_bad_values_and_colliding_names(source: pydicom.Dataset,
                                                       shipped_model: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``predict --dicom-out``: a film with bad values gets its results and no value is
    printed or logged (it logged "Unable to convert '19991231-...' to 'DA'"); ``a`` and
    ``a.dcm`` both made ``a.sr.dcm`` and the second overwrote the first. The paths are
    relative, so that the output holds no temporary folder (``pytest-62``) to mistake for
    a header value."""
    monkeypatch.chdir(tmp_path)
    inputs = Path("in")
    inputs.mkdir()
    with_bad_values(source).save_as(inputs / "a", enforce_file_format=True)
    source.save_as(inputs / "a.dcm", enforce_file_format=True)
    out = Path("results")
    result = CliRunner().invoke(app, ["predict", str(inputs / "a"), str(inputs / "a.dcm"),
                                      "--dicom-out", str(out), "--model", str(shipped_model),
                                      "--backend", "onnx"])
    assert result.exit_code == 0, result.output
    assert "2 DICOM result(s)" in result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a-2.heatmap.dcm", "a-2.sr.dcm", "a.heatmap.dcm", "a.sr.dcm"]
    studies = {pydicom.dcmread(out / name).SourceImageSequence[0].ReferencedSOPInstanceUID
               for name in written if "heatmap" in name}
    assert len(studies) == 2  # one per input, none overwritten
    assert bad_values_in(result.output) == []
    for name in written:
        assert dciodvfy_errors(out / name) == [], name
