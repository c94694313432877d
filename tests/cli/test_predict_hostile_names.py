"""``pneumoscan predict`` against hostile file names and output folders: formulas in the
CSV, terminal escapes on the console and in the log, a stale link in --cam-dir (tiny
random model: fast, no accuracy asserted)."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pneumoscan.cli.console import ControlCharacterFilter, escape, printable
from pneumoscan.cli.main import app

FORMULA_NAMES = ["=HYPERLINK(1).jpeg", "+1.jpeg", "@SUM(A1).jpeg", "-2.jpeg"]
ESCAPE_NAMES = ["title\x1b]0;pwned\x07.jpeg", "clear\x1b[2J\x1b[H.jpeg", "csi\u009b31m.jpeg"]


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["predict", "--backend", "torch", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture
def hostile(tmp_path: Path, shared_normal_images: list[Path]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in FORMULA_NAMES + ESCAPE_NAMES:
        shutil.copy(shared_normal_images[0], folder / name)
    return folder


def test_csv_cells_are_not_formulas(hostile: Path, tiny_model_dir: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "rows.csv"
    monkeypatch.chdir(hostile)  # names given bare: a cell starts with the name's first letter
    code, output = invoke("--out", out, "--model", tiny_model_dir, "--", *FORMULA_NAMES)
    assert code == 0, output
    cells = [row["file"] for row in csv.DictReader(out.open(encoding="utf-8"))]
    assert cells == ["'" + name for name in FORMULA_NAMES]
    # numbers stay numbers
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert all(float(row["model_output_probability"]) >= 0 for row in rows)


def test_terminal_escapes_in_names_are_shown_not_sent(hostile: Path, tiny_model_dir: Path,
                                                      tmp_path: Path) -> None:
    files = [hostile / name for name in ESCAPE_NAMES]
    for args in ([files[0]], files):  # the one-file summary and the table
        code, output = invoke(*args, "--model", tiny_model_dir)
        assert code == 0, output
        assert "\x1b" not in output and "\x9b" not in output and "\x07" not in output
        assert "\\x1b" in output
    # an unreadable file's error (shown in its row; the log does not name it) names it too
    broken = hostile / "broken\x1b[31m.jpeg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    code, output = invoke(broken, files[0], "--model", tiny_model_dir)
    assert "\x1b" not in output and "broken\\x1b" in output  # its row (the cell may wrap)


def test_log_records_carry_no_control_characters() -> None:
    record = logging.LogRecord("pneumoscan", logging.WARNING, __file__, 1,
                               "cannot predict %s", ("a\x1b[2Jb\rc",), None)
    assert ControlCharacterFilter().filter(record)
    assert record.getMessage() == "cannot predict a\\x1b[2Jb\\rc"
    assert printable("tab\tand\nnewline kept") == "tab\tand\nnewline kept"
    assert escape("[red]\u202eevil") == "\\[red]\\u202eevil"


def test_stale_link_in_cam_dir_is_reported_and_out_still_written(
        tiny_model_dir: Path, shared_normal_images: list[Path], tmp_path: Path) -> None:
    """The overlay's name is a dangling link pointing outside: the write is refused (as
    before) but as a warning, the other overlay is written, and --out holds both rows."""
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(shared_normal_images[0], images / "a.jpeg")
    shutil.copy(shared_normal_images[1], images / "b.jpeg")
    cams = tmp_path / "cams"
    cams.mkdir()
    outside = tmp_path / "outside" / "target.png"
    (cams / "a.jpeg.png").symlink_to(outside)
    out = tmp_path / "rows.csv"
    code, output = invoke(images, "--cam-dir", cams, "--out", out, "--model", tiny_model_dir)
    assert code == 0, output
    assert "Traceback" not in output
    assert "could not write the heat map of a.jpeg" in " ".join(output.split())
    assert not outside.exists()
    assert (cams / "b.jpeg.png").is_file()
    assert len(list(csv.DictReader(out.open(encoding="utf-8")))) == 2
