"""Batch prediction split across processes, merged into one output, resumable.

Under ``torchrun --nproc-per-node N`` each process takes a strided share of the sorted
file list (:func:`shard`), appends its rows to ``OUT.partR`` (JSON lines, flushed after
every chunk), and after a barrier rank 0 merges the parts and any rows already in ``OUT``
into ``OUT``, sorted by file (:func:`merge_shards`). A single process runs the same code
as rank 0 of 1, so the merged output of N processes equals the output of one.

Files already in ``OUT``, or in a part left behind by an interrupted run, are skipped
(:func:`already_done`): re-running the same command finishes the job.

Rows are flat dicts with a ``"file"`` key holding ``str(path)`` of the input. ``OUT``'s
format follows its suffix: ``.csv``, ``.json`` (a list of objects) or ``.jsonl``, written
by :func:`pneumoscan.reports.prediction_output.write_rows`, as ``pneumoscan predict`` writes it.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pneumoscan.reports.prediction_output import output_format, write_rows

logger = logging.getLogger(__name__)

Row = dict[str, Any]
KEY = "file"  # the column that names each row's input


@dataclass(frozen=True)
class ShardedRun:
    """What one call of :func:`run_sharded` did."""

    total: int  # files asked for
    skipped: int  # already in the output (or a part of an interrupted run)
    predicted: int  # predicted by this process


def shard(files: Iterable[Path], rank: int, world_size: int) -> list[Path]:
    """Process ``rank``'s share of ``files``: every ``world_size``-th of the sorted list."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} of world size {world_size}: expected "
                         "0 <= rank < world_size")
    return sorted(files, key=str)[rank::world_size]


def part_path(out: Path, rank: int) -> Path:
    """Where process ``rank`` keeps its rows before the merge: ``OUT.partR``."""
    return out.with_name(f"{out.name}.part{rank}")


def part_paths(out: Path) -> list[Path]:
    """Every part of ``out`` on disk, of this run or an interrupted one, in rank order."""
    found = out.parent.glob(glob.escape(out.name) + ".part*")
    return sorted((p for p in found if p.suffix[5:].isdigit()), key=lambda p: int(p.suffix[5:]))


def _read_json_lines(path: Path) -> list[Row]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a killed run: predicted again
            logger.warning("%s:%d: unreadable row skipped", path, number)
    return rows


def read_rows(path: Path) -> list[Row]:
    """The rows of an output file (CSV values come back as strings) or of a part."""
    if ".part" in path.suffix:
        return _read_json_lines(path)
    kind = output_format(path)
    if kind == "csv":
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    if kind == "jsonl":
        return _read_json_lines(path)
    rows = json.loads(path.read_text())
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of rows, found {type(rows).__name__}")
    return rows


def already_done(out_path: Path) -> set[str]:
    """Files with a row in ``out_path`` or in one of its parts (empty when neither exists)."""
    sources = ([out_path] if out_path.is_file() else []) + part_paths(out_path)
    return {str(row[KEY]) for source in sources for row in read_rows(source)}


def merge_shards(parts: Sequence[Path], out_path: Path) -> list[Row]:
    """Merge the rows of ``parts`` with those already in ``out_path``, sorted by file.

    A file in several places keeps its last row (parts after the existing output). The
    parts are deleted once ``out_path`` is written. Returns the merged rows.
    """
    by_file: dict[str, Row] = {}
    for source in ([out_path] if out_path.is_file() else []) + list(parts):
        for row in read_rows(source):
            by_file[str(row[KEY])] = row
    rows = [by_file[name] for name in sorted(by_file)]
    write_rows(rows, out_path)
    for part in parts:
        part.unlink()
    return rows


def _append_rows(rows: list[Row], path: Path) -> None:
    with path.open("a+b") as handle:  # writes go to the end whatever the position
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                handle.write(b"\n")  # after a torn last line from a killed run
        handle.write("".join(json.dumps(row) + "\n" for row in rows).encode())


def run_sharded(files: Sequence[Path], predict_rows: Callable[[list[Path]], list[Row]],
                out: Path, *, chunk_size: int = 64) -> ShardedRun:
    """Predict ``files`` into ``out``, split over torchrun's processes, skipping done ones.

    Every process calls this with the same arguments, inside
    :func:`pneumoscan.fitting.distributed.process_group` under torchrun (gloo suffices: only files
    move). Returns once ``out`` holds every file's row, on every process.

    Args:
        files: the inputs; each row's ``"file"`` must be ``str(path)`` of one of them.
        predict_rows: predicts a list of files, returning one row per file it could read.
        out: the merged output (``.csv``, ``.json`` or ``.jsonl``).
        chunk_size: files per call of ``predict_rows``; each chunk is saved before the next.
    """
    from pneumoscan.fitting import distributed  # torch: only under torchrun

    output_format(out)  # an unknown suffix fails before any work
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if distributed.launched_by_torchrun() and distributed.world_size() == 1:
        raise RuntimeError("started by torchrun, but no process group: call run_sharded() "
                           "inside pneumoscan.fitting.distributed.process_group()")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = already_done(out)
    todo = [f for f in files if str(f) not in done]
    distributed.barrier()  # everyone has read the parts before anyone appends to them
    mine = shard(todo, distributed.rank(), distributed.world_size())
    part = part_path(out, distributed.rank())
    for start in range(0, len(mine), chunk_size):
        rows = predict_rows(mine[start:start + chunk_size])
        if any(KEY not in row for row in rows):
            raise ValueError(f"predict_rows returned a row without a {KEY!r} key")
        _append_rows(rows, part)
    distributed.barrier()
    if distributed.is_main_process():
        merge_shards(part_paths(out), out)
    distributed.barrier()  # nobody returns before the output is complete
    return ShardedRun(total=len(files), skipped=len(files) - len(todo), predicted=len(mine))
