"""Prediction results as rows: finding input files, CSV / JSON writing, safe overlay names.

One row per input file, successful or not, with the same keys in CSV and JSON:
``file, label, probability, threshold, cause, cause_probability, in_scope, scope_reason,
scope_distance, population, population_reason, population_probability, population_warning,
applicable, model, error`` (``applicable``: in scope and no population warning; a result
that is not applicable must not be read as a finding). On success ``error`` is empty; on
failure ``probability`` (and every other result field) is empty in CSV and ``null`` in JSON,
and ``error`` says what went wrong.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pneumoscan.imaging import IMAGE_SUFFIXES, is_dicom
from pneumoscan.predictor import FileResult

#: Column order of CSV output and key order of JSON objects.
ROW_FIELDS = ("file", "label", "probability", "threshold", "cause", "cause_probability",
              "in_scope", "scope_reason", "scope_distance", "population", "population_reason",
              "population_probability", "population_warning", "applicable", "model", "error")
#: Output formats by file name suffix (JSON lines too: what a torchrun run's parts hold).
OUTPUT_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}
#: Longest overlay file name stem kept before a hash replaces the rest.
MAX_NAME_LENGTH = 120

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def result_row(result: FileResult) -> dict[str, Any]:
    """The output row of one file (keys :data:`ROW_FIELDS`); JSON-ready values."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row["file"] = result.file
    row["error"] = result.error
    if result.prediction is not None:
        data = result.prediction.to_dict()
        for key in ROW_FIELDS[1:-1]:
            row[key] = data[key]
    return row


def output_format(path: Path) -> str:
    """``"csv"``, ``"json"`` or ``"jsonl"`` from the suffix of ``path``.

    Raises:
        ValueError: any other suffix.
    """
    try:
        return OUTPUT_FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"--out {path}: unknown output format {path.suffix or '(none)'!r}; "
                         "use a .csv, .json or .jsonl file name") from None


def format_rows(rows: list[dict[str, Any]], kind: str) -> str:
    """Rows as CSV text (empty cells for None), a JSON list of objects, or JSON lines.

    CSV columns are the rows' keys in first-seen order (:data:`ROW_FIELDS` for result rows
    and when there are no rows).
    """
    if kind == "json":
        return json.dumps(rows, indent=2) + "\n"
    if kind == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    if kind != "csv":
        raise ValueError(f"unknown output format {kind!r}; expected one of "
                         f"{sorted(set(OUTPUT_FORMATS.values()))}")
    columns = list(dict.fromkeys(key for row in rows for key in row)) or list(ROW_FIELDS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)  # None is written as an empty cell
    return buffer.getvalue()


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows to ``path`` in the format its suffix names; return ``path``.

    Atomic: the text goes to a temporary file beside ``path``, which then replaces it, so
    a kill leaves the old file whole and a reader never sees half of the new one.
    """
    text = format_rows(rows, output_format(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; hidden files and folders skipped.

    A file counts when its suffix is one pneumoscan reads (``.jpeg .jpg .png .dcm``) or when
    it has no suffix and starts like a DICOM file (scanners often write such names).
    Symbolic links to folders are not followed, so a link cannot make the walk loop.
    """
    found: list[Path] = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(directory) / name
            if name.startswith("."):
                continue
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES or (not suffix and _starts_like_dicom(path)):
                found.append(path)
    return found


def _starts_like_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return is_dicom(handle.read(132))
    except OSError:
        return False


def expand_inputs(inputs: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """``(path, name)`` of every file to predict: files as given, folders expanded.

    ``name`` is the file's name for a file given directly, and its path relative to the
    folder (``sub/x.png``) for a file found under a folder: what overlay names derive from.

    Raises:
        FileNotFoundError: an input does not exist.
    """
    for path in inputs:
        if path.is_dir():
            for found in find_images(path):
                yield found, found.relative_to(path).as_posix()
        elif path.exists():
            yield path, path.name
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")


def safe_file_name(file: str, suffix: str = ".png") -> str:
    """A file name derived from ``file`` that is safe to create inside any folder.

    Folders become ``__``, anything but letters, digits, ``.``, ``_`` and ``-`` becomes
    ``_``, leading dots are dropped (no hidden files, no ``..``), and long names are cut
    and given a hash of the full input so they stay distinct. The result never holds a
    path separator, so it cannot name a place outside the folder it is joined to.
    """
    parts = [p for p in re.split(r"[\\/]+", file) if p not in {"", ".", ".."}]
    stem = _UNSAFE.sub("_", "__".join(parts)).lstrip(".")
    if len(stem) > MAX_NAME_LENGTH:
        digest = hashlib.sha256(file.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        stem = f"{stem[:MAX_NAME_LENGTH - 13]}-{digest}"
    return (stem or "image") + suffix


class OverlayNamer:
    """Hands out distinct, safe overlay paths inside one folder.

    ``scans/a.png`` and ``scans/a.png.dcm`` give distinct names; a name already handed out
    gets ``-2``, ``-3``... before the suffix.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._used: set[str] = set()

    def path_for(self, file: str) -> Path:
        """The overlay path for input ``file``, always directly inside :attr:`folder`."""
        name = safe_file_name(file)
        stem, suffix = name[: -len(".png")], ".png"
        candidate, n = name, 1
        while candidate.lower() in self._used:
            n += 1
            candidate = f"{stem}-{n}{suffix}"
        self._used.add(candidate.lower())
        path = self.folder / candidate
        # Belt and braces: the name has no separator, but check the resolved parent anyway.
        if path.resolve().parent != self.folder.resolve():
            raise ValueError(f"refusing overlay path {path}: it is not inside {self.folder}")
        return path


def write_file_inside(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with ``data`` without following a symbolic link there.

    A link planted at ``path`` (pointing outside the folder) makes this fail with OSError
    instead of writing through it.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
