"""``pneumoscan evaluate``: metrics, plots and an HTML report on a labelled folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.panel import Panel

from pneumoscan.cli.console import configure_logging, console, progress_bar, stdout, user_errors

#: Names of evaluate's phases, in order, on the progress bar.
PHASES = ("reading images", "predicting")


def evaluate_command(
    data: Path = typer.Option(..., "--data", metavar="DIR", help="Folder with NORMAL/ and "
                              "PNEUMONIA/, or a root whose test/ split (else its only "
                              "split) is evaluated."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Where metrics.json, "
                             "predictions.csv, the plots and report.html go."),
    model: Path | None = typer.Option(None, "--model", metavar="PATH", help="Model folder "
                                      "or .safetensors file (default: the shipped model)."),
    backend: str = typer.Option("auto", "--backend", metavar="NAME", help="auto, onnx (no "
                                "PyTorch needed) or torch."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", min=1,
                                   help="Images per forward pass."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details."),
) -> None:
    """Evaluate a model on a labelled folder.

    At the model's validation-chosen threshold, never re-tuned here. Warns when the
    evaluated images include the model's own training or validation files: figures on
    those are not a test of the model.
    """
    configure_logging(verbose)
    from pneumoscan.reports.evaluation import evaluate

    with user_errors(), progress_bar() as bar:
        task = bar.add_task(PHASES[0], total=None)
        phase = {"index": -1}

        def progress(kind: str, amount: int) -> None:
            if kind == "start":
                phase["index"] += 1
                bar.reset(task, total=amount, description=PHASES[min(phase["index"], 1)])
            else:
                bar.advance(task, amount)

        metrics = evaluate(data, out, model_path=model, backend=backend, batch_size=batch_size,
                           progress=progress)
    ci = metrics["auc_ci95"]
    split = metrics["split"]
    console.print(f"evaluated {'the ' + split + ' split of ' if split != 'all' else ''}"
                  f"{escape(str(data))}")
    stdout.print(f"n={metrics['n']}  AUC {metrics['auc']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]  "
                 f"accuracy {metrics['accuracy']:.4f}  sensitivity "
                 f"{metrics['sensitivity']:.4f}  specificity {metrics['specificity']:.4f}  "
                 f"threshold {metrics['threshold']:.2f}", soft_wrap=True)
    _print_overlap(metrics)
    console.print(f"report: {escape(str(out / 'report.html'))}")


def _print_overlap(metrics: dict[str, Any]) -> None:
    """The overlap with the model's own data, as a red panel that cannot be missed."""
    from pneumoscan.training_files import overlap_warnings

    if metrics["overlap"] is None:
        console.print("[yellow]note:[/] the model keeps no record of its training files; "
                      "overlap with its training data was not checked")
        return
    warnings = overlap_warnings(metrics["overlap"], metrics["n"])
    if warnings:
        console.print(Panel("\n".join(f"{escape(w)}." for w in warnings),
                            title="[bold]WARNING: the model has seen these images[/]",
                            border_style="bold red", style="red"))
