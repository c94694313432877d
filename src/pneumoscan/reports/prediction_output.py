"""Prediction results as rows: CSV / JSON writing, safe overlay names.

One row per input file, successful or not, with the same keys in CSV and JSON
(:data:`ROW_FIELDS`): ``Prediction.to_dict`` flattened, its ``model_output`` object as
``model_output_*`` columns and its reasons joined into one cell. ``label``, ``probability``,
``cause`` and ``cause_probability`` are the finding, empty when the result does not apply
(``applicable`` false, ``not_applicable_reasons`` saying why); the ``model_output_*``
columns hold the model's raw output, which is not a finding by itself. On success
``error`` is empty; on failure every result field is empty in CSV and ``null`` in JSON,
and ``error`` says what went wrong.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from pneumoscan.predictor import FileResult

#: Column order of CSV output and key order of JSON objects.
ROW_FIELDS = ("file", "applicable", "not_applicable_reasons", "label", "probability",
              "threshold", "cause", "cause_probability", "in_scope", "scope_reason",
              "scope_distance", "population", "population_reason", "population_probability",
              "population_warning", "model_output_label", "model_output_probability",
              "model_output_cause", "model_output_cause_probability", "model_output_note",
              "model", "error")
#: Output formats by file name suffix (JSON lines too: what a torchrun run's parts hold).
OUTPUT_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}
#: Longest overlay file name stem kept before a hash replaces the rest.
MAX_NAME_LENGTH = 120

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: A CSV cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...)).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def result_row(result: FileResult) -> dict[str, Any]:
    """The output row of one file (keys :data:`ROW_FIELDS`); JSON-ready values."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row["file"] = result.file
    row["error"] = result.error
    if result.prediction is not None:
        data = result.prediction.to_dict()
        data["not_applicable_reasons"] = " ".join(data["not_applicable_reasons"])
        for key, value in data.pop("model_output").items():
            data[f"model_output_{key}"] = value
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
    """Rows as CSV text (empty cells for None; text that a spreadsheet would take for a
    formula prefixed with ``'``), a JSON list of objects, or JSON lines.

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
    writer.writerows([{key: _not_formula(value) for key, value in row.items()}
                      for row in rows])  # None is written as an empty cell
    return buffer.getvalue()


def _not_formula(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, with a leading ``'`` (as the
    page's own CSV export does); numbers, including negative ones, are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


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
