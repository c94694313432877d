"""``pneumoscan predict``: predict files or whole folders, optionally with heat-map overlays.

One file: a readable summary on stdout. Folders (searched recursively) or several files: a
progress bar, then a table, or a CSV / JSON file with ``--out``. Unreadable files become
error rows; the exit code is 1 only when nothing at all could be predicted.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from pneumoscan import DISCLAIMER
from pneumoscan.cli.console import configure_logging, console, progress_bar, stdout, user_errors
from pneumoscan.extras import require

if TYPE_CHECKING:  # imported lazily at run time: `pneumoscan --help` stays fast
    from pneumoscan.dicom_node.result_files import DicomResultWriter
    from pneumoscan.prediction_output import OverlayNamer
    from pneumoscan.predictor import FileResult, Predictor

logger = logging.getLogger(__name__)


def predict_command(
    inputs: list[Path] = typer.Argument(..., metavar="PATH", help="Image files (.jpeg "
                                        ".jpg .png .dcm) and/or folders, searched "
                                        "recursively."),
    out: Path | None = typer.Option(None, "--out", help="Write one row per file to this "
                                    ".csv or .json file."),
    cam_dir: Path | None = typer.Option(None, "--cam-dir", help="Also write a heat-map "
                                        "overlay PNG per image into this folder."),
    dicom_out: Path | None = typer.Option(None, "--dicom-out", help="Also write a DICOM "
                                          "SR and heat-map Secondary Capture per DICOM "
                                          "input into this folder (in its study)."),
    model: Path | None = typer.Option(None, "--model", help="Model folder or .safetensors "
                                      "file (default: the shipped model)."),
    backend: str = typer.Option("auto", "--backend", help="auto, torch or onnx."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per forward "
                                   "pass."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Predict pneumonia on chest X-rays (decision support, not a diagnosis)."""
    configure_logging(verbose)
    _silence_dicom_header_messages()
    from pneumoscan.prediction_output import OverlayNamer, expand_inputs, output_format

    with user_errors():
        if out is not None:
            output_format(out)  # a bad suffix fails before any work is done
        files = list(expand_inputs(inputs))
        if not files:
            console.print("[bold red]error:[/] no .jpeg, .jpg, .png or .dcm file found in "
                          f"{escape(', '.join(str(p) for p in inputs))}")
            raise typer.Exit(code=1)
        from pneumoscan.predictor import Predictor

        predictor = Predictor.load(model, backend=backend)
        from pneumoscan import distributed

        if distributed.launched_by_torchrun():
            if dicom_out is not None:
                raise ValueError("--dicom-out is not supported under torchrun")
            _run_as_shard(predictor, files, out, cam_dir, batch_size)
            return
        namer = None
        if cam_dir is not None:
            cam_dir.mkdir(parents=True, exist_ok=True)
            namer = OverlayNamer(cam_dir)
        dicom_writer = _dicom_writer(dicom_out)
    single = len(files) == 1 and not inputs[0].is_dir()
    results, overlays = _run(predictor, files, namer, batch_size, show_progress=not single,
                             dicom_writer=dicom_writer)
    if out is not None:
        _write(results, out)
    if single and out is None:
        _print_summary(results[0], overlays.get(0))
    elif out is None:
        _print_table(results)
    _print_footer(results, predictor.version, overlays)
    if dicom_writer is not None:
        stdout.print(f"{dicom_writer.written} DICOM result(s) (SR + heat map) written to "
                     f"{escape(str(dicom_out))}")
    if not any(r.ok for r in results):
        raise typer.Exit(code=1)


def _run_as_shard(predictor: Predictor, files: list[tuple[Path, str]], out: Path | None,
                  cam_dir: Path | None, batch_size: int) -> None:
    """Under torchrun: predict this process's share of ``files`` and merge into ``out``.

    Files already in ``out`` are skipped, so a re-run resumes (see docs/scaling.md).
    """
    if out is None:
        raise ValueError("under torchrun, pass --out: the processes merge into one file")
    if cam_dir is not None:
        raise ValueError("--cam-dir is not supported under torchrun; run it in one process")
    require("prediction under torchrun", ("torch",), "torch")
    from pneumoscan import distributed
    from pneumoscan.prediction_output import result_row
    from pneumoscan.sharded_prediction import run_sharded

    def predict_rows(paths: list[Path]) -> list[dict[str, object]]:
        return [result_row(r) for r in predictor.predict_files(paths, batch_size=batch_size)]

    with distributed.process_group("cpu"):
        run_sharded([path for path, _ in files], predict_rows, out)
        if distributed.is_main_process():
            console.print(f"merged the shards into {escape(str(out))}")


def _silence_dicom_header_messages() -> None:
    """Keep pydicom's own warnings off the terminal: on malformed headers they quote the
    offending values, which can be patient data. Errors still reach the output rows."""
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


def _dicom_writer(folder: Path | None) -> DicomResultWriter | None:
    if folder is None:
        return None
    require("--dicom-out", ("highdicom",), "dicom-node")
    from pneumoscan.dicom_node.log_privacy import silence_identity_warnings
    from pneumoscan.dicom_node.result_files import DicomResultWriter

    silence_identity_warnings()
    return DicomResultWriter(folder)


def _run(predictor: Predictor, files: list[tuple[Path, str]], namer: OverlayNamer | None,
         batch_size: int, *, show_progress: bool, dicom_writer: DicomResultWriter | None = None,
         ) -> tuple[list[FileResult], dict[int, Path]]:
    """Predict every file, writing overlays as results arrive (pixels are not all kept)."""
    from pneumoscan.heatmap import overlay_png
    from pneumoscan.prediction_output import write_file_inside
    from pneumoscan.predictor import FileResult

    results: list[FileResult] = []
    overlays: dict[int, Path] = {}
    names = [name for _, name in files]
    with progress_bar() as bar:
        task = bar.add_task("predicting", total=len(files), visible=show_progress)
        stream = predictor.predict_files([path for path, _ in files], batch_size=batch_size,
                                         heatmap=namer is not None
                                         or dicom_writer is not None,
                                         progress=lambda n: bar.advance(task, n))
        for index, result in enumerate(stream):
            prediction = result.prediction
            if namer is not None and prediction is not None \
                    and prediction.heatmap is not None and prediction.pixels is not None:
                path = namer.path_for(names[index])
                try:
                    write_file_inside(path, overlay_png(prediction.pixels, prediction.heatmap))
                    overlays[index] = path
                except OSError as exc:
                    logger.warning("could not write the overlay %s: %s", path, exc)
            if dicom_writer is not None and prediction is not None:
                dicom_writer.write_or_warn(files[index][0], names[index], prediction)
            # Keep the row, drop the pixels and heat map: folders can be large.
            if prediction is not None:
                result = FileResult(result.file, replace(prediction, pixels=None,
                                                         heatmap=None))
            results.append(result)
    return results, overlays


def _write(results: list[FileResult], out: Path) -> None:
    from pneumoscan.prediction_output import result_row, write_rows

    try:
        write_rows([result_row(r) for r in results], out)
    except OSError as exc:
        console.print(f"[bold red]error:[/] could not write {escape(str(out))}: "
                      f"{escape(str(exc.strerror or exc))}")
        raise typer.Exit(code=1) from exc
    console.print(f"wrote {len(results)} row(s) to {escape(str(out))}")


def _print_summary(result: FileResult, overlay: Path | None) -> None:
    """The single-file summary: label, probability, threshold, cause, scope, model."""
    prediction = result.prediction
    if prediction is None:
        console.print(f"[bold red]error:[/] {escape(result.error)}")
        return
    # File names, reasons and errors are data, not markup: escape() keeps "[x]" literal.
    table = Table(show_header=False, box=None, pad_edge=False, title=escape(result.file),
                  title_justify="left", title_style="bold")
    table.add_column(style="dim")
    table.add_column()
    colour = "red" if prediction.is_pneumonia else "green"
    table.add_row("label", f"[bold {colour}]{prediction.label}[/]")
    table.add_row("probability", f"{prediction.probability:.3f}  (P(pneumonia), calibrated)")
    table.add_row("threshold", f"{prediction.threshold:.3f}  (the model's operating point)")
    if prediction.cause is not None and prediction.cause_probability is not None:
        table.add_row("cause", f"{prediction.cause}  (P(bacterial) "
                      f"{prediction.cause_probability:.3f}; a secondary, lower-confidence "
                      "estimate)")
    if prediction.in_scope:
        table.add_row("in scope", "yes")
    else:
        table.add_row("in scope", f"[bold yellow]NO[/]: {escape(prediction.scope_reason)}; the "
                      "result is not meaningful for this image")
    table.add_row("image", f"{prediction.width}x{prediction.height}")
    table.add_row("model", escape(prediction.model))
    if overlay is not None:
        table.add_row("heat map", escape(str(overlay)))
    stdout.print(table)


def _print_table(results: list[FileResult]) -> None:
    folder = _common_folder([result.file for result in results])
    table = Table(title=None, show_lines=False, caption_justify="left",
                  caption=f"files in {escape(str(folder))}" if folder else None)
    for column in ("file", "label", "probability", "cause", "in scope", "error"):
        table.add_column(column, overflow="fold")
    for result in results:
        p = result.prediction
        name = escape(os.path.relpath(result.file, folder) if folder else result.file)
        if p is None:
            table.add_row(name, "", "", "", "", f"[red]{escape(result.error)}[/]")
            continue
        cause = "" if p.cause is None else f"{p.cause} ({p.cause_probability:.2f})"
        scope = "yes" if p.in_scope else f"[yellow]no: {escape(p.scope_reason)}[/]"
        table.add_row(name, p.label, f"{p.probability:.3f}", cause, scope, "")
    stdout.print(table)


def _common_folder(files: list[str]) -> Path | None:
    """The folder all ``files`` lie under, when there are several: the table then shows
    their paths from there (short names, not the same long prefix on every row)."""
    if len(files) < 2:
        return None
    try:
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    except ValueError:  # on different drives
        return None
    return Path(folder)


def _print_footer(results: list[FileResult], version: str, overlays: dict[int, Path]) -> None:
    predictions = [r.prediction for r in results if r.prediction is not None]
    failed = len(results) - len(predictions)
    out_of_scope = sum(not p.in_scope for p in predictions)
    if len(results) > 1:
        threshold = predictions[0].threshold if predictions else None
        parts = [f"{len(predictions)} predicted", f"{failed} failed",
                 f"{out_of_scope} out of scope"]
        if overlays:
            parts.append(f"{len(overlays)} heat map(s) written")
        stdout.print(", ".join(parts) + f"; model {escape(version)}"
                     + ("" if threshold is None else f", threshold {threshold:.3f}"))
    if len(results) > 1 and any(p.cause is not None for p in predictions):
        stdout.print("cause (bacterial/viral) is a secondary, lower-confidence estimate.")
    stdout.print(f"[italic]{DISCLAIMER}[/]")
