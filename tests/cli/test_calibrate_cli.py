"""``pneumoscan calibrate`` end to end, and the site model's version on every face: the
CLI table, the JSON rows, the worklist, evaluate's report (with its warning on the
calibration films), the API (whose /health the page footer shows), and the DICOM SR and
Secondary Capture."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import site_films
from pneumoscan.cli.main import app
from pneumoscan.modelfile import resolve_model
from pneumoscan.server import ServerSettings, create_app

SITE_VERSION = f"{resolve_model(None).card.version}+site-testsite"
runner = CliRunner()


def test_calibrate_writes_a_site_model_and_reports_intervals(chest_xray_dir: Path,
                                                            tmp_path: Path) -> None:
    films = site_films(chest_xray_dir, tmp_path / "films", 25, 40)
    result = runner.invoke(app, ["calibrate", "--data", str(films), "--out",
                                 str(tmp_path / "site"), "--name", "north-7"])
    assert result.exit_code == 0, result.output
    card = resolve_model(tmp_path / "site").card
    assert card.version.endswith("+site-north-7")
    assert f"version {card.version}" in result.output
    record = card.site_calibration
    low, high = record["figures"]["specificity_ci95"]
    assert f"specificity {record['figures']['specificity']:.3f} [{low:.3f}, {high:.3f}]" \
        in result.output
    parent = resolve_model(None).card.threshold
    assert f"threshold {card.threshold:.3f} (parent {parent:.3f})" in result.output
    # again into the same folder: refused, the model there is kept
    again = runner.invoke(app, ["calibrate", "--data", str(films), "--out",
                                str(tmp_path / "site"), "--name", "other"])
    assert again.exit_code == 2 and "already holds a model" in again.output
    assert resolve_model(tmp_path / "site").card.version == card.version


def test_calibrate_refuses_too_few_films(chest_xray_dir: Path, tmp_path: Path) -> None:
    films = site_films(chest_xray_dir, tmp_path / "films", 10, 50)
    result = runner.invoke(app, ["calibrate", "--data", str(films), "--out",
                                 str(tmp_path / "site")])
    assert result.exit_code == 2
    assert "(10 normal," in result.output and "at least 20 of each class" in result.output
    assert not (tmp_path / "site").exists()


def test_the_cli_json_and_worklist_show_the_site_version(site_model: Path,
                                                        tmp_path: Path) -> None:
    films = site_model.parent / "films" / "NORMAL"
    one = sorted(films.iterdir())[0]
    table = runner.invoke(app, ["predict", str(one), "--model", str(site_model)],
                          env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert re.search(rf"model\s+{re.escape(SITE_VERSION)}", table.output)
    rows = tmp_path / "rows.json"
    listed = runner.invoke(app, ["predict", str(one), "--model", str(site_model), "--out",
                                 str(rows), "--report", str(tmp_path / "worklist.html")])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(rows.read_text())
    assert row["model"] == SITE_VERSION
    assert row["threshold"] == pytest.approx(resolve_model(site_model).card.threshold)
    assert SITE_VERSION in (tmp_path / "worklist.html").read_text()


def test_evaluate_warns_on_the_calibration_films(site_model: Path, tmp_path: Path) -> None:
    films = site_model.parent / "films"
    result = runner.invoke(app, ["evaluate", "--data", str(films), "--model",
                                 str(site_model), "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    counted = resolve_model(site_model).card.site_calibration
    assert metrics["overlap"]["calibration"] == counted["n_normal"] + counted["n_pneumonia"]
    assert metrics["model"] == SITE_VERSION
    assert "site's own films this site calibration was fitted on" in " ".join(
        result.output.split())
    report = (tmp_path / "eval" / "report.html").read_text()
    assert SITE_VERSION in report and "calibration figures, not test figures" in report


def test_the_api_shows_the_site_version(site_model: Path) -> None:
    film = sorted((site_model.parent / "films" / "PNEUMONIA").iterdir())[0]
    with TestClient(create_app(ServerSettings(model=site_model))) as client:
        health = client.get("/api/v1/health").json()  # the page footer shows health.model
        assert health["model"] == SITE_VERSION
        answer = client.post("/api/v1/predict", files={"file": ("x.png", film.read_bytes(),
                                                                "image/png")}).json()
        assert answer["model"] == SITE_VERSION
        assert answer["threshold"] == pytest.approx(resolve_model(site_model).card.threshold)
        assert client.get("/api/v1/model").json()["version"] == SITE_VERSION


def test_the_dicom_results_show_the_site_version(site_model: Path, dicom_dir: Path,
                                                 tmp_path: Path) -> None:
    pytest.importorskip("highdicom")
    result = runner.invoke(app, ["predict", str(dicom_dir / "cr_siim_pa_jpeg_baseline.dcm"),
                                 "--model", str(site_model), "--dicom-out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = [pydicom.dcmread(p) for p in sorted(tmp_path.rglob("*.dcm"))]
    capture = [d for d in written if d.Modality != "SR"]
    report = [d for d in written if d.Modality == "SR"]
    assert capture and report
    assert capture[0].SoftwareVersions == SITE_VERSION
    texts: list[str] = []

    def walk(sequence: pydicom.Sequence) -> None:
        for item in sequence:
            texts.append(str(item.get("TextValue", "")))
            walk(item.get("ContentSequence", []))

    walk(report[0].ContentSequence)
    assert SITE_VERSION in texts  # the SR's Algorithm Version
