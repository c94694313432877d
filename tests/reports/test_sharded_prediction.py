"""Sharding, merging and resuming of batch prediction, in one process (the 2-process run is
in test_distributed.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pneumoscan.reports.prediction_output import ROW_FIELDS, write_rows
from pneumoscan.reports.sharded_prediction import (
    already_done,
    merge_shards,
    part_path,
    part_paths,
    read_rows,
    run_sharded,
    shard,
)

FILES = [Path(f"scans/{name}.png") for name in ("d", "a", "c", "e", "b")]


def _row(file: str | Path, probability: float = 0.5) -> dict:
    return {"file": str(file), "label": "NORMAL", "probability": probability, "error": ""}


class FakePredictor:
    """predict_rows for run_sharded: probability from the name, every call noted."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, files: list[Path]) -> list[dict]:
        self.calls.append([str(f) for f in files])
        return [_row(f, (ord(f.stem[0]) - 96) / 10) for f in files]


def test_shard_is_a_strided_split_of_the_sorted_list() -> None:
    assert shard(FILES, 0, 2) == [Path("scans/a.png"), Path("scans/c.png"), Path("scans/e.png")]
    assert shard(FILES, 1, 2) == [Path("scans/b.png"), Path("scans/d.png")]
    assert shard(FILES, 0, 1) == sorted(FILES)
    assert shard(reversed(FILES), 1, 2) == shard(FILES, 1, 2)  # input order does not matter
    shares = [shard(FILES, rank, 3) for rank in range(3)]
    assert sorted(f for share in shares for f in share) == sorted(FILES)
    assert [len(s) for s in shares] == [2, 2, 1]
    assert shard(FILES, 5, 8) == []  # more processes than files: some get none


@pytest.mark.parametrize(("rank", "world"), [(2, 2), (-1, 2), (0, 0)])
def test_shard_rejects_a_rank_outside_the_world(rank: int, world: int) -> None:
    with pytest.raises(ValueError, match=f"rank {rank} of world size {world}"):
        shard(FILES, rank, world)


def test_already_done_reads_csv_json_and_parts(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert already_done(out) == set()
    write_rows([_row("a"), _row("b")], out)
    assert already_done(out) == {"a", "b"}
    part_path(out, 3).write_text(json.dumps(_row("c")) + "\n" + '{"file": "d", "lab')  # torn
    assert already_done(out) == {"a", "b", "c"}
    as_json = tmp_path / "out.json"
    write_rows([_row("x")], as_json)
    assert already_done(as_json) == {"x"}


def test_part_paths_are_in_rank_order(tmp_path: Path) -> None:
    out = tmp_path / "res[1].csv"  # glob characters in the name are taken literally
    for rank in (10, 2, 0):
        part_path(out, rank).write_text("")
    (tmp_path / "res[1].csv.partial").write_text("")
    assert [p.name for p in part_paths(out)] == ["res[1].csv.part0", "res[1].csv.part2",
                                                 "res[1].csv.part10"]


def test_merge_shards_sorts_keeps_old_rows_and_removes_parts(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    write_rows([_row("b", 0.2), _row("d", 0.1)], out)
    part_path(out, 0).write_text("".join(json.dumps(_row(f, 0.3)) + "\n" for f in "ca"))
    part_path(out, 1).write_text(json.dumps(_row("d", 0.4)) + "\n")  # newer than out's d

    rows = merge_shards(part_paths(out), out)

    assert [r["file"] for r in rows] == ["a", "b", "c", "d"]
    assert not part_paths(out)
    with out.open(newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [(r["file"], r["probability"]) for r in written] == \
        [("a", "0.3"), ("b", "0.2"), ("c", "0.3"), ("d", "0.4")]
    assert out.read_text().splitlines()[0] == "file,label,probability,error"


def test_merge_shards_writes_json_like_a_direct_write(tmp_path: Path) -> None:
    out, direct = tmp_path / "out.json", tmp_path / "direct.json"
    rows = [_row("a", 0.123456789), {**_row("b"), "probability": None, "error": "unreadable"}]
    part_path(out, 0).write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    merge_shards(part_paths(out), out)
    write_rows(rows, direct)
    assert out.read_text() == direct.read_text()
    assert read_rows(out) == rows


def test_unknown_output_format_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown output format '\.txt'"):
        run_sharded(FILES, FakePredictor(), tmp_path / "out.txt")


def test_run_sharded_alone_predicts_everything_once_then_skips(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    predict = FakePredictor()
    first = run_sharded(FILES, predict, out, chunk_size=2)
    assert (first.total, first.skipped, first.predicted) == (5, 0, 5)
    assert predict.calls == [["scans/a.png", "scans/b.png"], ["scans/c.png", "scans/d.png"],
                             ["scans/e.png"]]  # sorted, in chunks
    assert [r["file"] for r in read_rows(out)] == [str(f) for f in sorted(FILES)]
    assert not part_paths(out)

    again = FakePredictor()
    second = run_sharded(FILES, again, out)
    assert (second.skipped, second.predicted, again.calls) == (5, 0, [])
    assert [r["file"] for r in read_rows(out)] == [str(f) for f in sorted(FILES)]


def test_run_sharded_resumes_an_interrupted_run(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    # A killed run left rows for a and d in its part, the last one torn mid-line.
    part_path(out, 1).write_text(json.dumps(_row("scans/a.png", 0.9)) + "\n"
                                 + json.dumps(_row("scans/d.png", 0.9)) + "\n{\"file\": ")
    predict = FakePredictor()
    result = run_sharded(FILES, predict, out)
    assert predict.calls == [["scans/b.png", "scans/c.png", "scans/e.png"]]
    assert result.skipped == 2
    rows = read_rows(out)
    assert [r["file"] for r in rows] == [str(f) for f in sorted(FILES)]
    assert [r["probability"] for r in rows] == [0.9, 0.2, 0.3, 0.9, 0.5]


def test_run_sharded_needs_a_file_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without a 'file' key"):
        run_sharded(FILES, lambda files: [{"name": str(f)} for f in files], tmp_path / "o.csv")


def test_run_sharded_matches_a_direct_write_of_the_clis_rows(tmp_path: Path) -> None:
    """Hooked into ``pneumoscan predict``, the merged file is what the CLI writes itself."""
    def predict_rows(files: list[Path]) -> list[dict]:
        return [{**dict.fromkeys(ROW_FIELDS), "file": str(f), "probability": 0.25, "error": ""}
                for f in files]

    for name in ("out.csv", "out.json", "out.jsonl"):
        merged, direct = tmp_path / name, tmp_path / f"direct-{name}"
        run_sharded(FILES[:3], predict_rows, merged)
        run_sharded(FILES, predict_rows, merged)  # resumed
        write_rows(predict_rows(sorted(FILES)), direct)
        assert merged.read_text() == direct.read_text()
        assert [row["file"] for row in read_rows(merged)] == sorted(map(str, FILES))
