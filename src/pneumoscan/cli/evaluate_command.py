"""``pneumoscan evaluate``: metrics, plots and an HTML report on a labelled folder."""

from __future__ import annotations

from pathlib import Path

import typer

from pneumoscan.cli.console import configure_logging, console, progress_bar, stdout, user_errors


def evaluate_command(
    data: Path = typer.Option(..., "--data", help="Folder with NORMAL/ and PNEUMONIA/ (or a "
                              "root whose test/ split is evaluated)."),
    out: Path = typer.Option(..., "--out", help="Where metrics.json, predictions.csv, the "
                             "plots and report.html go."),
    model: Path | None = typer.Option(None, "--model", help="Model folder or .safetensors "
                                      "file (default: the shipped model)."),
    backend: str = typer.Option("auto", "--backend", help="auto, onnx (no PyTorch needed) "
                                "or torch."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Evaluate a model at its validation-chosen threshold (never re-tuned here)."""
    configure_logging(verbose)
    from pneumoscan.evaluation import evaluate

    with user_errors(), progress_bar() as bar:
        task = bar.add_task("reading images", total=None)
        metrics = evaluate(data, out, model_path=model, backend=backend, batch_size=batch_size,
                           progress=lambda n: bar.advance(task, n))
    ci = metrics["auc_ci95"]
    stdout.print(f"n={metrics['n']}  AUC {metrics['auc']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]  "
                 f"accuracy {metrics['accuracy']:.4f}  sensitivity "
                 f"{metrics['sensitivity']:.4f}  specificity {metrics['specificity']:.4f}  "
                 f"threshold {metrics['threshold']:.2f}")
    console.print(f"report: {out / 'report.html'}")
