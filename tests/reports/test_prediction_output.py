"""Rows, CSV / JSON writing, folder scanning and overlay-path safety."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.predictor import FileResult, Prediction
from pneumoscan.reports.prediction_output import (
    ROW_FIELDS,
    OverlayNamer,
    format_rows,
    output_format,
    result_row,
    safe_file_name,
    write_file_inside,
    write_rows,
)

EVIL_NAMES = [
    "../../etc/passwd", "/etc/cron.d/x.png", "..", ".", "", "a/../../b.png", "..\\..\\x.png",
    "C:\\Windows\\system32\\x.png", ".bashrc", "~/x.png", "sub/./../x.png", "x\x00y.png",
    "naïve résumé.png", "a" * 400 + ".png", "-rf .png", "con.png", "$(reboot).png",
]


def _prediction(probability: float = 0.9, *, positive: bool = True) -> Prediction:
    return Prediction(label="PNEUMONIA" if positive else "NORMAL", probability=probability,
                      threshold=0.5, in_scope=True, scope_reason="",
                      cause="bacterial" if positive else None,
                      cause_probability=0.8 if positive else None, heatmap=None,
                      model="m1", width=10, height=10)


def test_rows_carry_every_field_and_null_probability_on_error() -> None:
    good = result_row(FileResult("a.png", _prediction()))
    bad = result_row(FileResult("b.png", None, "b.png: the file is empty (0 bytes)"))
    assert tuple(good) == ROW_FIELDS == tuple(bad)
    assert good["probability"] == 0.9 and good["error"] == ""
    assert good["cause"] == "bacterial" and good["cause_probability"] == 0.8
    assert bad["probability"] is None and bad["label"] is None
    assert bad["error"].endswith("empty (0 bytes)")


def test_csv_and_json_formats(tmp_path: Path) -> None:
    rows = [result_row(FileResult("a,b.png", _prediction(0.25, positive=False))),
            result_row(FileResult("c.png", None, "broken"))]
    csv_path = write_rows(rows, tmp_path / "out" / "results.CSV")
    with csv_path.open() as handle:
        read = list(csv.DictReader(handle))
    assert list(read[0]) == list(ROW_FIELDS)
    assert read[0]["file"] == "a,b.png" and read[0]["probability"] == "0.25"
    assert read[0]["cause"] == "" and read[0]["in_scope"] == "True"
    assert read[1]["probability"] == "" and read[1]["error"] == "broken"
    json_rows = json.loads(write_rows(rows, tmp_path / "results.json").read_text())
    assert json_rows[1]["probability"] is None and json_rows[0]["in_scope"] is True
    with pytest.raises(ValueError, match=r"\.csv, \.json or \.jsonl"):
        output_format(tmp_path / "results.txt")
    with pytest.raises(ValueError, match="format"):
        format_rows(rows, "xml")


def test_write_rows_is_atomic_and_writes_json_lines(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "results.csv"
    write_rows([{"file": "old", "error": ""}], out)
    before = out.read_text()

    def fail(self: Path, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", fail)  # killed between writing and renaming
    with pytest.raises(OSError, match="disk full"):
        write_rows([{"file": "new", "error": ""}], out)
    monkeypatch.undo()
    assert out.read_text() == before == "file,error\nold,\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temporary
    lines = write_rows([{"file": "a", "p": None}, {"file": "b", "p": 0.5}],
                       tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"file": "a", "p": None},
                                                    {"file": "b", "p": 0.5}]


@pytest.mark.parametrize("name", EVIL_NAMES)
def test_safe_file_name_has_no_way_out(name: str) -> None:
    safe = safe_file_name(name)
    assert safe.endswith(".png")
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith(".")  # no hidden file, no "." or ".." component
    assert len(safe) <= 130
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in safe)


@pytest.mark.parametrize("name", EVIL_NAMES)
def test_overlay_paths_stay_in_the_folder(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "cams"
    folder.mkdir()
    path = OverlayNamer(folder).path_for(name)
    assert path.parent == folder
    assert path.resolve().parent == folder.resolve()


def test_overlay_names_are_distinct_and_readable(tmp_path: Path) -> None:
    namer = OverlayNamer(tmp_path)
    names = [namer.path_for(n).name for n in ("x y.png", "x_y.png", "X_Y.png", "sub/a.dcm",
                                              "a.dcm")]
    assert names == ["x_y.png.png", "x_y.png-2.png", "X_Y.png-3.png", "sub__a.dcm.png",
                     "a.dcm.png"]
    long_a, long_b = (safe_file_name("a" * 300 + suffix) for suffix in ("1", "2"))
    assert long_a != long_b  # cut names keep a hash of the whole


def test_write_file_inside_refuses_a_planted_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "cams"
    folder.mkdir()
    os.symlink(outside, folder / "x.png.png")
    with pytest.raises(OSError):
        write_file_inside(folder / "x.png.png", b"overwrite")
    assert outside.read_text() == "keep me"
    write_file_inside(folder / "y.png", b"ok")
    assert (folder / "y.png").read_bytes() == b"ok"


def test_rows_round_trip_through_json_with_numpy_free_values() -> None:
    row = result_row(FileResult("a.png", _prediction(float(np.float32(0.5)))))
    assert json.loads(json.dumps(row))["probability"] == 0.5
