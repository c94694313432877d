"""``pneumoscan predict``: predict files or whole folders, optionally with heat-map overlays.

One file: a readable summary on stdout. Folders (searched recursively) or several files: a
progress bar, then a table, or a CSV / JSON file with ``--out``, and with ``--report`` a
ranked worklist as one self-contained HTML file (:mod:`pneumoscan.reports.worklist`). Unreadable
files become error rows; the exit code is 1 only when nothing at all could be predicted.
A result that is not applicable (out of scope, or outside the population the model was
validated on) is shown as such on every face, never as a bare coloured label.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from pneumoscan import DISCLAIMER
from pneumoscan.cli.console import (
    configure_logging,
    console,
    progress_bar,
    silence_header_messages,
    stdout,
    user_errors,
)
from pneumoscan.extras import require

if TYPE_CHECKING:  # imported lazily at run time: `pneumoscan --help` stays fast
    from pneumoscan.dicom_node.result_files import DicomResultWriter
    from pneumoscan.predictor import FileResult, Prediction, Predictor
    from pneumoscan.reports.prediction_output import OverlayNamer
    from pneumoscan.reports.worklist import WorklistEntry

logger = logging.getLogger(__name__)


def predict_command(
    inputs: list[Path] = typer.Argument(..., metavar="PATH", help="Image files (.jpeg "
                                        ".jpg .png .dcm) and/or folders, searched "
                                        "recursively."),
    out: Path | None = typer.Option(None, "--out", metavar="FILE", help="Write one row per "
                                    "file to this .csv, .json or .jsonl file."),
    report: Path | None = typer.Option(None, "--report", metavar="FILE", help="Also write a "
                                       "worklist: one self-contained HTML file, most "
                                       "suspicious first, with thumbnails, heat maps and "
                                       "flags."),
    cam_dir: Path | None = typer.Option(None, "--cam-dir", metavar="DIR", help="Also write a "
                                        "heat-map overlay PNG per image into this folder, "
                                        "its result in a corner."),
    dicom_out: Path | None = typer.Option(None, "--dicom-out", help="Also write a DICOM "
                                          "SR and heat-map Secondary Capture per DICOM "
                                          "input into this folder (in its study)."),
    model: Path | None = typer.Option(None, "--model", metavar="PATH", help="Model folder or "
                                      ".safetensors file (default: the shipped model)."),
    backend: str = typer.Option("auto", "--backend", metavar="NAME", help="auto, torch or "
                                "onnx."),
    batch_size: int = typer.Option(16, "--batch-size", metavar="N", min=1, help="Images per "
                                   "forward pass."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details."),
) -> None:
    """Predict pneumonia on chest X-rays.

    Decision support, not a diagnosis. A result out of scope or outside the population the
    model was validated on (children aged 1-5) is marked not applicable.
    """
    configure_logging(verbose)
    silence_header_messages()
    from pneumoscan.reports.prediction_output import OverlayNamer, expand_inputs, output_format

    with user_errors():
        if out is not None:
            output_format(out)  # a bad suffix fails before any work is done
        if report is not None and report.suffix.lower() not in (".html", ".htm"):
            raise ValueError(f"--report {report}: the worklist is an HTML file; name it "
                             "*.html")
        files = list(expand_inputs(inputs))
        if not files:
            console.print("[bold red]error:[/] no .jpeg, .jpg, .png or .dcm file found in "
                          f"{escape(', '.join(str(p) for p in inputs))}")
            raise typer.Exit(code=1)
        from pneumoscan.predictor import Predictor

        predictor = Predictor.load(model, backend=backend)
        from pneumoscan.torchrun import launched_by_torchrun

        if launched_by_torchrun():
            if report is not None:
                raise ValueError("--report is not supported under torchrun; run it in one "
                                 "process")
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
    entries: list[WorklistEntry] | None = [] if report is not None else None
    results, overlays = _run(predictor, files, namer, batch_size, show_progress=not single,
                             dicom_writer=dicom_writer, worklist=entries)
    if out is not None:
        _write(results, out)
    if report is not None:
        _write_worklist(entries, report, predictor.version, inputs)
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
    from pneumoscan.fitting import distributed
    from pneumoscan.reports.prediction_output import result_row
    from pneumoscan.reports.sharded_prediction import run_sharded

    def predict_rows(paths: list[Path]) -> list[dict[str, object]]:
        return [result_row(r) for r in predictor.predict_files(paths, batch_size=batch_size)]

    with distributed.process_group("cpu"):
        run_sharded([path for path, _ in files], predict_rows, out)
        if distributed.is_main_process():
            console.print(f"merged the shards into {escape(str(out))}")


def _dicom_writer(folder: Path | None) -> DicomResultWriter | None:
    if folder is None:
        return None
    require("--dicom-out", ("highdicom",), "dicom-node")
    from pneumoscan.dicom_node.result_files import DicomResultWriter

    return DicomResultWriter(folder)


def _run(predictor: Predictor, files: list[tuple[Path, str]], namer: OverlayNamer | None,
         batch_size: int, *, show_progress: bool, dicom_writer: DicomResultWriter | None = None,
         worklist: list[WorklistEntry] | None = None,
         ) -> tuple[list[FileResult], dict[int, Path]]:
    """Predict every file, writing overlays and adding ``worklist`` entries (small images)
    as results arrive: the pixels of a whole folder are never all kept."""
    from pneumoscan.predictor import FileResult
    from pneumoscan.reports.prediction_output import write_file_inside
    from pneumoscan.reports.result_overlay import result_overlay_png

    if worklist is not None:
        from pneumoscan.reports.worklist import worklist_entry

    results: list[FileResult] = []
    overlays: dict[int, Path] = {}
    names = [name for _, name in files]
    with progress_bar() as bar:
        task = bar.add_task("predicting", total=len(files), visible=show_progress)
        stream = predictor.predict_files([path for path, _ in files], batch_size=batch_size,
                                         heatmap=namer is not None
                                         or dicom_writer is not None
                                         or worklist is not None,
                                         progress=lambda n: bar.advance(task, n))
        for index, result in enumerate(stream):
            prediction = result.prediction
            if namer is not None and prediction is not None \
                    and prediction.heatmap is not None and prediction.pixels is not None:
                path = namer.path_for(names[index])
                try:
                    write_file_inside(path, result_overlay_png(prediction))
                    overlays[index] = path
                except OSError as exc:
                    logger.warning("could not write the overlay %s: %s", path, exc)
            if dicom_writer is not None and prediction is not None:
                dicom_writer.write_or_warn(files[index][0], names[index], prediction)
            if worklist is not None:
                worklist.append(worklist_entry(result))
            # Keep the row, drop the pixels and heat map: folders can be large.
            if prediction is not None:
                result = FileResult(result.file, replace(prediction, pixels=None,
                                                         heatmap=None))
            results.append(result)
    return results, overlays


def _write(results: list[FileResult], out: Path) -> None:
    from pneumoscan.reports.prediction_output import result_row, write_rows

    try:
        write_rows([result_row(r) for r in results], out)
    except OSError as exc:
        console.print(f"[bold red]error:[/] could not write {escape(str(out))}: "
                      f"{escape(str(exc.strerror or exc))}")
        raise typer.Exit(code=1) from exc
    console.print(f"wrote {len(results)} row(s) to {escape(str(out))}")


def _write_worklist(entries: list[WorklistEntry] | None, path: Path, version: str,
                    inputs: list[Path]) -> None:
    from pneumoscan.reports.worklist import write_worklist

    try:
        write_worklist(path, entries or [], model=version,
                       source=", ".join(str(p) for p in inputs))
    except OSError as exc:
        console.print(f"[bold red]error:[/] could not write {escape(str(path))}: "
                      f"{escape(str(exc.strerror or exc))}")
        raise typer.Exit(code=1) from exc
    console.print(f"wrote the worklist of {len(entries or [])} file(s) to "
                  f"{escape(str(path))}")


def _not_applicable_because(prediction: Prediction) -> list[str]:
    """Why a result may not be read as a finding, in words ([] when it may)."""
    why = []
    if not prediction.in_scope:
        why.append(f"out of scope: {prediction.scope_reason}")
    if prediction.population_warning:
        why.append(prediction.population_warning)
    return why


def _population_flagged(prediction: Prediction) -> bool:
    """A population warning worth its own line: not the "unknown" of an image whose
    population was not assessed because it is out of scope (that flag says enough)."""
    from pneumoscan.population import UNKNOWN

    return bool(prediction.population_warning) and (prediction.in_scope
                                                    or prediction.population != UNKNOWN)


def _print_summary(result: FileResult, overlay: Path | None) -> None:
    """The single-file summary: any reason the result does not apply first, then label,
    probability, threshold, cause, scope, population, model."""
    prediction = result.prediction
    if prediction is None:
        console.print(f"[bold red]error:[/] {escape(result.error)}")
        return
    # File names, reasons and errors are data, not markup: escape() keeps "[x]" literal.
    table = Table(show_header=False, box=None, pad_edge=False, title=escape(result.file),
                  title_justify="left", title_style="bold")
    table.add_column(style="dim")
    table.add_column()
    for reason in _not_applicable_because(prediction):
        table.add_row("[bold yellow]NOT APPLICABLE[/]", f"[bold yellow]{escape(reason)}[/]")
    if prediction.applicable:
        colour = "red" if prediction.is_pneumonia else "green"
        table.add_row("label", f"[bold {colour}]{prediction.label}[/]")
    else:
        table.add_row("label", f"[dim]{prediction.label} (the model's output; not a finding "
                      "for this image)[/]")
    table.add_row("probability", f"{prediction.probability:.3f}  (P(pneumonia), calibrated)")
    table.add_row("threshold", f"{prediction.threshold:.3f}  (the model's operating point)")
    if prediction.cause is not None and prediction.cause_probability is not None \
            and prediction.applicable:
        table.add_row("cause", f"{prediction.cause}  (P(bacterial) "
                      f"{prediction.cause_probability:.3f}; a secondary, lower-confidence "
                      "estimate)")
    if prediction.in_scope:
        table.add_row("in scope", "yes")
    else:
        table.add_row("in scope", f"[bold yellow]NO[/]: {escape(prediction.scope_reason)}; the "
                      "result is not meaningful for this image")
    population = escape(prediction.population)
    if prediction.population_reason:
        population += f"  ({escape(prediction.population_reason)})"
    table.add_row("population", f"[bold yellow]{population}[/]" if prediction.population_warning
                  else population)
    table.add_row("image", f"{prediction.width}x{prediction.height}")
    table.add_row("model", escape(prediction.model))
    if overlay is not None:
        table.add_row("heat map", escape(str(overlay)))
    stdout.print(table)


def _print_table(results: list[FileResult]) -> None:
    """One row per file; a result that does not apply shows "not applicable" and why
    instead of its label, and its probability dimmed; an unreadable file, its error."""
    folder = _common_folder([result.file for result in results])
    table = Table(title=None, show_lines=False, caption_justify="left",
                  caption=f"files in {escape(str(folder))}" if folder else None)
    table.add_column("file", overflow="fold")
    table.add_column("label", no_wrap=True)
    table.add_column("P(pneumonia)", justify="right", no_wrap=True)
    table.add_column("cause", no_wrap=True)
    table.add_column("flags / error", overflow="fold")
    for result in results:
        p = result.prediction
        name = escape(os.path.relpath(result.file, folder) if folder else result.file)
        if p is None:
            table.add_row(name, "[red]not read[/]", "", "", f"[red]{escape(result.error)}[/]")
            continue
        if p.applicable:
            colour = "red" if p.is_pneumonia else "green"
            cause = "" if p.cause is None else f"{p.cause} ({p.cause_probability:.2f})"
            table.add_row(name, f"[{colour}]{p.label}[/]", f"{p.probability:.3f}", cause, "")
            continue
        flags = []
        if not p.in_scope:
            flags.append(f"[bold yellow]out of scope[/]: {escape(p.scope_reason)}")
        if _population_flagged(p):
            flags.append(f"[bold yellow]population {escape(p.population)}[/]"
                         + (f": {escape(p.population_reason)}" if p.population_reason else ""))
        table.add_row(name, f"[yellow]not applicable[/]\n[dim]({p.label})[/]",
                      f"[dim]{p.probability:.3f}[/]", "", "\n".join(flags))
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
    outside_population = sum(_population_flagged(p) for p in predictions)
    if len(results) > 1:
        threshold = predictions[0].threshold if predictions else None
        parts = [f"{len(predictions)} predicted", f"{failed} failed",
                 f"{out_of_scope} out of scope",
                 f"{outside_population} outside the validated population"]
        if overlays:
            parts.append(f"{len(overlays)} heat map(s) written")
        stdout.print(", ".join(parts) + f"; model {escape(version)}"
                     + ("" if threshold is None else f", threshold {threshold:.3f}"))
        # Each distinct population warning once, in full (the table names the population).
        flagged = [p for p in predictions if _population_flagged(p)]
        for warning in dict.fromkeys(p.population_warning for p in flagged):
            count = sum(p.population_warning == warning for p in flagged)
            stdout.print(f"[bold yellow]{count} file(s):[/] {escape(warning)}")
        if out_of_scope or outside_population:
            stdout.print("Results marked not applicable are not findings: the model's "
                         "output for them is shown dimmed.")
    if len(results) > 1 and any(p.cause is not None and p.applicable for p in predictions):
        stdout.print("cause (bacterial/viral) is a secondary, lower-confidence estimate.")
    stdout.print(f"[italic]{DISCLAIMER}[/]")
