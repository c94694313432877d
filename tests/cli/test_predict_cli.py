"""``pneumoscan predict``: one file, folders with a broken file, CSV / JSON, overlays, exit
codes and path safety, with the tiny random model (fast; no accuracy asserted)."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from pneumoscan import DISCLAIMER
from pneumoscan.cli.main import app
from pneumoscan.heatmap import legend_bar
from pneumoscan.reports.prediction_output import ROW_FIELDS


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def scans(tmp_path: Path, shared_normal_images: list[Path],
          shared_pneumonia_images: list[Path]) -> Path:
    """A folder of 4 good images in two levels, one truncated JPEG and a text file."""
    root = tmp_path / "scans"
    (root / "ward b").mkdir(parents=True)
    shutil.copy(shared_normal_images[0], root / "n1.jpeg")
    shutil.copy(shared_normal_images[1], root / "ward b" / "n2.jpeg")
    shutil.copy(shared_pneumonia_images[0], root / "p1.jpeg")
    Image.open(shared_pneumonia_images[1]).convert("L").save(root / "ward b" / "p2.png")
    (root / "broken.jpeg").write_bytes(shared_normal_images[2].read_bytes()[:1200])
    (root / "notes.txt").write_text("not an image; skipped")
    return root


def _invoke(runner: CliRunner, *args: str | Path) -> Result:
    # PyTorch explicitly: ONNX parity has its own tests, and these must not depend on it.
    return runner.invoke(app, ["predict", *map(str, args), "--backend", "torch"])


def test_single_file_summary(runner: CliRunner, tiny_model_dir: Path,
                             shared_normal_images: list[Path]) -> None:
    result = _invoke(runner, shared_normal_images[0], "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # undo rich's line wrapping
    # The tiny model has no scope fit: out of scope, so no label and no model output.
    for expected in ("NOT APPLICABLE", "Out of scope: scope check not fitted",
                     "threshold 0.500", "in scope", "tiny-test-model", "224x224"):
        assert expected in out
    body = " ".join(result.stdout.split("\n", 1)[1].split())  # below the file's name
    assert not any(label in body for label in ("NORMAL", "PNEUMONIA", "model output"))
    assert " ".join(DISCLAIMER.split()) in out


def test_single_file_shows_cause_only_when_pneumonia(runner: CliRunner, tiny_model_dir: Path,
                                                     tmp_path: Path,
                                                     shared_normal_images: list[Path]) -> None:
    positive = tmp_path / "always_positive"
    shutil.copytree(tiny_model_dir, positive)
    card = json.loads((positive / "model.json").read_text())
    (positive / "model.json").write_text(json.dumps({**card, "threshold": 0.0}))
    result = _invoke(runner, shared_normal_images[0], "--model", positive)
    out = " ".join(result.stdout.split("\n", 1)[1].split())  # below the file's name
    # Out of scope (the tiny model has no scope fit): no label and no cause estimate, even
    # though the model's output is positive (the rows keep it as model_output_*).
    assert "PNEUMONIA" not in out and "P(bacterial)" not in out and "NOT APPLICABLE" in out
    rows_path = tmp_path / "row.json"
    _invoke(runner, shared_normal_images[0], "--model", positive, "--out", rows_path)
    (row,) = json.loads(rows_path.read_text())
    assert row["label"] is None and row["cause"] is None
    assert row["model_output_label"] == "PNEUMONIA" and row["model_output_cause"] is not None
    negative = tmp_path / "never_positive"
    shutil.copytree(tiny_model_dir, negative)
    (negative / "model.json").write_text(json.dumps({**card, "threshold": 1.01}))
    out = _invoke(runner, shared_normal_images[0], "--model", negative).stdout
    assert "NORMAL" not in out.split("\n", 1)[1] and "P(bacterial)" not in out


@pytest.mark.slow
def test_single_applicable_pneumonia_shows_label_and_cause(
        runner: CliRunner, shared_pneumonia_images: list[Path]) -> None:
    result = _invoke(runner, shared_pneumonia_images[0])  # the shipped model, a child's film
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "NOT APPLICABLE" not in out and "label PNEUMONIA" in out
    assert "P(bacterial)" in out and "lower-confidence" in out
    assert "population pediatric" in out


def test_folder_to_csv_with_a_broken_file(runner: CliRunner, tiny_model_dir: Path,
                                          scans: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "results.csv"
    result = _invoke(runner, scans, "--out", out_csv, "--model", tiny_model_dir,
                     "--batch-size", "2")
    assert result.exit_code == 0, result.output
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(ROW_FIELDS)
    files = [Path(r["file"]).relative_to(scans).as_posix() for r in rows]
    assert files == ["broken.jpeg", "n1.jpeg", "p1.jpeg", "ward b/n2.jpeg", "ward b/p2.png"]
    broken = rows[0]
    assert broken["model_output_probability"] == "" and "truncated" in broken["error"]
    for row in rows[1:]:  # out of scope (no scope fit): no finding, the raw output kept
        assert row["error"] == "" and row["applicable"] == "False"
        assert row["label"] == row["probability"] == ""
        assert 0.0 <= float(row["model_output_probability"]) <= 1.0
        assert row["threshold"] == "0.5" and row["model"] == "tiny-test-model"
        assert row["in_scope"] == "False" and row["not_applicable_reasons"]
    assert "4 predicted, 1 failed" in " ".join(result.stdout.split())


def test_folder_to_json(runner: CliRunner, tiny_model_dir: Path, scans: Path,
                        tmp_path: Path) -> None:
    out_json = tmp_path / "nested" / "results.json"
    result = _invoke(runner, scans, "--out", out_json, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    rows = json.loads(out_json.read_text())
    assert isinstance(rows, list) and len(rows) == 5
    assert all(list(row) == list(ROW_FIELDS) for row in rows)
    assert rows[0]["model_output_probability"] is None and rows[0]["error"]
    assert all(isinstance(r["model_output_probability"], float) for r in rows[1:])
    assert all(r["probability"] is None and r["applicable"] is False for r in rows[1:])
    assert all(isinstance(r["in_scope"], bool) for r in rows[1:])


def test_folder_without_out_prints_a_table(runner: CliRunner, tiny_model_dir: Path,
                                           scans: Path) -> None:
    result = _invoke(runner, scans, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "n1.jpeg" in result.stdout and "truncated" in result.stdout
    # Names from the folder given, which the caption names once (however long its path).
    assert "files in" in result.stdout and "scans/n1.jpeg" not in result.stdout


def test_exit_code_1_when_nothing_predicts(runner: CliRunner, tiny_model_dir: Path,
                                           tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.jpeg").write_text("hello")
    out_csv = tmp_path / "r.csv"
    result = _invoke(runner, bad, "--out", out_csv, "--model", tiny_model_dir)
    assert result.exit_code == 1
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(r["error"] for r in rows)
    single = _invoke(runner, bad / "empty.png", "--model", tiny_model_dir)
    assert single.exit_code == 1 and "empty" in single.output
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    assert _invoke(runner, empty_dir, "--model", tiny_model_dir).exit_code == 1


def test_usage_errors_exit_2(runner: CliRunner, tiny_model_dir: Path, scans: Path,
                             tmp_path: Path) -> None:
    assert _invoke(runner, tmp_path / "missing.png", "--model", tiny_model_dir).exit_code == 2
    wrong = _invoke(runner, scans, "--out", tmp_path / "r.xlsx", "--model", tiny_model_dir)
    assert wrong.exit_code == 2 and ".csv, .json or .jsonl" in " ".join(wrong.output.split())
    assert _invoke(runner, scans, "--model", tmp_path / "no_model").exit_code == 2
    assert _invoke(runner, scans, "--batch-size", "0").exit_code == 2


def test_cam_dir_overlays_at_original_aspect(runner: CliRunner, tiny_model_dir: Path,
                                             tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 150), np.uint8)).save(
        folder / "tall.png")
    Image.fromarray(np.full((100, 100), 90, np.uint8)).save(folder / "sub" / "tall.png")
    cams = tmp_path / "heatmaps"
    result = _invoke(runner, folder, "--cam-dir", cams, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in cams.iterdir())
    assert written == ["sub__tall.png.png", "tall.png.png"]
    legend = legend_bar(150).shape[0]  # the colour bar below the image
    assert Image.open(cams / "tall.png.png").size == (150, 300 + legend)
    assert Image.open(cams / "tall.png.png").mode == "RGB"


def test_cam_dir_cannot_be_escaped_by_file_names(runner: CliRunner, tiny_model_dir: Path,
                                                 tmp_path: Path,
                                                 shared_normal_images: list[Path]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    # Names a file system allows that would be dangerous if used as paths carelessly.
    for name in ("..jpeg", "...png", "-rf.jpeg", "$(id).png", "a b;c.png", "..%2f..%2fx.png"):
        shutil.copy(shared_normal_images[0], folder / name)
    cams = tmp_path / "outer" / "cams"
    # Given one by one: a folder scan would skip the hidden ones (names starting with ".").
    result = _invoke(runner, *sorted(folder.iterdir()), "--cam-dir", cams,
                     "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert sorted(p.parent for p in (tmp_path / "outer").rglob("*.png")) == [cams] * 6
    assert not any(p.name.startswith(".") for p in cams.iterdir())
    assert {p.name for p in tmp_path.iterdir()} == {"in", "outer"}


def test_dicom_with_overlay_and_no_patient_tags(runner: CliRunner, tiny_model_dir: Path,
                                                dicom_dir: Path, tmp_path: Path) -> None:
    import pydicom

    path = dicom_dir / "cr_nema_pa_monochrome1_jpegls.dcm"
    header = pydicom.dcmread(path, stop_before_pixels=True)
    secrets = [str(header.get(t, "")) for t in ("PatientName", "PatientID", "PatientBirthDate")]
    cams = tmp_path / "cams"
    result = _invoke(runner, path, "--cam-dir", cams, "--model", tiny_model_dir, "-v")
    assert result.exit_code == 0, result.output
    # 1841 wide x 1955 high, shrunk so the longer side is 1024: the same aspect ratio.
    width = round(1024 * 1841 / 1955)
    assert Image.open(cams / f"{path.name}.png").size == (width, 1024 + legend_bar(width).shape[0])
    for secret in secrets:
        if len(secret) >= 4:
            assert secret not in result.output


def _write_dicom(path: Path, pixels: np.ndarray, **tags: str) -> Path:
    """An uncompressed 8-bit MONOCHROME2 CR DICOM with extra header ``tags``."""
    from pydicom import config
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1")  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.Modality = "CR"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.tobytes()
    before = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE  # malformed on purpose
    try:
        for key, value in tags.items():
            setattr(dataset, key, value)
        dataset.save_as(path, enforce_file_format=True)
    finally:
        config.settings.writing_validation_mode = before
    return path


@pytest.mark.filterwarnings("ignore::UserWarning:pydicom.*")  # malformed on purpose
def test_malformed_header_values_are_never_shown(runner: CliRunner, tiny_model_dir: Path,
                                                 tmp_path: Path,
                                                 shared_normal_images: list[Path]) -> None:
    """A header whose values break the DICOM rules (pydicom then quotes them in warnings)
    and carry patient data: neither the terminal nor the rows repeat them."""
    pixels = np.asarray(Image.open(shared_normal_images[0]).convert("L"))
    secret_name, secret_id = "Doe^Jane Secretname", "PID-99887766"
    path = _write_dicom(tmp_path / "odd.dcm", pixels, PatientName=secret_name,
                        PatientID=secret_id,
                        BodyPartExamined=f"CHEST {secret_id} Secretname",
                        ViewPosition=f"PA {secret_id}")
    out_json = tmp_path / "rows.json"
    result = _invoke(runner, path, "--model", tiny_model_dir, "-v", "--out", out_json)
    assert result.exit_code == 0, result.output
    text = result.output + out_json.read_text()
    assert "not the chest" in text  # the body part was read, and judged
    for secret in ("Secretname", secret_id, "Doe"):
        assert secret not in text


def test_markup_like_file_names_are_shown_literally(runner: CliRunner, tiny_model_dir: Path,
                                                    tmp_path: Path,
                                                    shared_normal_images: list[Path]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    odd = folder / "[bold red]x[blink].jpeg"
    shutil.copy(shared_normal_images[0], odd)
    (folder / "[reverse]broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    table = runner.invoke(app, ["predict", str(folder), "--model", str(tiny_model_dir),
                                "--backend", "torch"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "[reverse]broken" in table.stdout  # shown as text, not read as rich markup
    single = runner.invoke(app, ["predict", str(odd), "--model", str(tiny_model_dir),
                                 "--backend", "torch"], env={"COLUMNS": "300"})
    assert single.exit_code == 0, single.output
    assert "[bold red]x[blink].jpeg" in single.stdout


def test_report_is_a_self_contained_worklist_with_error_rows(runner: CliRunner,
                                                             tiny_model_dir: Path, scans: Path,
                                                             tmp_path: Path) -> None:
    """The tiny model has no scope fit: every result is out of scope, so none is ranked as a
    finding; the broken file is an error row."""
    report = tmp_path / "out" / "worklist.html"
    result = _invoke(runner, scans, "--report", report, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert DISCLAIMER in page
    assert "Ranked results (0)" in page and "Not applicable (4)" in page
    assert "Not read (1)" in page and "truncated" in page
    # the image of each of the 4 predicted; their heat maps withheld (they do not apply)
    assert page.count('src="data:image/jpeg;base64,') == 4
    assert page.count("Heat map withheld") == 4
    assert "OUT OF SCOPE" in page and 'class="label PNEUMONIA"' not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<script" not in page
    for name in ("n1.jpeg", "p1.jpeg", "ward b/n2.jpeg", "ward b/p2.png", "broken.jpeg"):
        assert name in page, name
    assert "wrote the worklist of 5 file(s)" in " ".join(result.output.split())
    # the terminal table says the same: no bare label for a result that does not apply
    table = " ".join(result.stdout.split())
    assert "not applicable" in table and "out of scope" in table


def test_report_must_be_html(runner: CliRunner, tiny_model_dir: Path, scans: Path,
                             tmp_path: Path) -> None:
    result = _invoke(runner, scans, "--report", tmp_path / "worklist.pdf", "--model",
                     tiny_model_dir)
    assert result.exit_code == 2 and "HTML file" in result.output
    assert not (tmp_path / "worklist.pdf").exists()


@pytest.mark.slow
def test_report_ranks_the_shipped_models_results(runner: CliRunner, scans: Path,
                                                 tmp_path: Path) -> None:
    """Pediatric training films: applicable, ranked by probability as the CSV has them."""
    report, rows_csv = tmp_path / "worklist.html", tmp_path / "rows.csv"
    result = _invoke(runner, scans, "--report", report, "--out", rows_csv)
    assert result.exit_code == 0, result.output
    with rows_csv.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["applicable"] == "True"]
    assert rows, "the shipped model should find its own pediatric films applicable"
    expected = [Path(r["file"]).relative_to(scans).as_posix()
                for r in sorted(rows, key=lambda r: -float(r["probability"]))]
    page = report.read_text()
    ranked = page[page.index("Ranked results"):page.index("</table>")]
    positions = [ranked.index(f"<code>{html.escape(name)}</code>") for name in expected]
    assert positions == sorted(positions)


def test_single_file_not_applicable_leads_and_has_no_bare_label(
        runner: CliRunner, tiny_model_dir: Path, shared_normal_images: list[Path]) -> None:
    result = _invoke(runner, shared_normal_images[0], "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[1].startswith("NOT APPLICABLE")  # right under the file name
    out = " ".join(result.stdout.split())
    assert "Out of scope" in out and "population" in out
    assert "label" not in out.split(" ", 1)[1]  # out of scope: no label, not even dimmed


def test_cam_dir_overlay_carries_the_result_in_its_corner(runner: CliRunner,
                                                          tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((240, 240), 200, np.uint8)).save(folder / "flat.png")
    cams = tmp_path / "cams"
    assert _invoke(runner, folder, "--cam-dir", cams, "--model", tiny_model_dir).exit_code == 0
    rgb = np.asarray(Image.open(cams / "flat.png.png"))
    corner, middle = rgb[:12, :60].astype(int), rgb[120:, 100:140].astype(int)
    assert corner.mean() < middle.mean() - 60  # the dark text box over a bright film
    assert len({tuple(px) for px in corner.reshape(-1, 3)}) > 3  # with text on it
