"""``pneumoscan calibrate``: a model's probabilities and threshold refitted on a site's films."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from pneumoscan.cli.console import configure_logging, console, progress_bar, stdout, user_errors


def calibrate_command(
    model: Path | None = typer.Argument(None, help="Model folder or .safetensors file "
                                        "(default: the shipped model)."),
    data: Path = typer.Option(..., "--data", metavar="DIR", help="The site's labelled films: "
                              "NORMAL/ and PNEUMONIA/ (at least 50 that count, 20 of each "
                              "class; 100-200 is better)."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="The new site model's folder "
                             "(its card and the record of these films; the weights stay the "
                             "parent's, by reference)."),
    name: str = typer.Option("local", "--name", metavar="NAME", help="The site's name; the "
                             "version becomes PARENT+site-NAME."),
    sensitivity: float = typer.Option(0.95, "--sensitivity", min=0.5, max=0.999,
                                      help="The operating sensitivity the threshold must "
                                      "reach, by a one-sided lower confidence bound."),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.999,
                                     help="Confidence of that bound."),
    backend: str = typer.Option("auto", "--backend", metavar="NAME", help="auto, onnx or "
                                "torch."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details."),
) -> None:
    """Calibrate a model on a site's own labelled films.

    Refits the probability calibration (Platt scaling) and chooses the threshold at the
    requested sensitivity on the films whose result applies (in scope, the population the
    model was validated on), and writes a site model whose version names the site. Its
    weights are the parent's, unchanged. Evaluate it on other films than these."""
    configure_logging(verbose)
    from pneumoscan.fitting.site_calibration import calibrate_site

    with user_errors(), progress_bar() as bar:
        task = bar.add_task("predicting", total=None)

        def progress(kind: str, amount: int) -> None:
            if kind == "start":
                bar.reset(task, total=amount)
            else:
                bar.advance(task, amount)

        card, fit, _ = calibrate_site(model, data, out, name=name,
                                      sensitivity=sensitivity, confidence=confidence,
                                      backend=backend, progress=progress)
    _print_summary(card.site_calibration, card.version, card.threshold)
    if not fit.threshold.reached:
        console.print(f"[yellow]note:[/] with {fit.threshold.n_positive} pneumonia films "
                      f"a sensitivity of {sensitivity:g} cannot be shown at "
                      f"{confidence:.0%} confidence; the threshold catches all of them "
                      f"(lower bound {fit.threshold.lower_bound:.3f}). Label more "
                      "pneumonia films to set it at the requested sensitivity.")
    console.print(f"site model: {escape(str(out))} (use it with --model); evaluate it on "
                  "films other than these")


def _interval(figures: dict[str, Any], key: str) -> str:
    low, high = figures[f"{key}_ci95"]
    return f"{figures[key]:.3f} [{low:.3f}, {high:.3f}]"


def _print_summary(record: dict[str, Any], version: str, threshold: float) -> None:
    """The site model's figures, with their 95 % intervals, against the parent's."""
    now, before = record["figures"], record["parent_figures"]
    left_out = ", ".join(f"{n} {why}" for why, n in record["excluded"].items() if n)
    stdout.print(f"version {version}", soft_wrap=True)
    stdout.print(f"films counted: {record['n_normal']} normal, {record['n_pneumonia']} "
                 f"pneumonia (prevalence {record['prevalence']:.1%})"
                 + (f"; left out: {left_out}" if left_out else ""), soft_wrap=True)
    stdout.print(f"threshold {threshold:.3f} (parent {before['threshold']:.3f}); "
                 f"sensitivity lower bound {record['sensitivity_lower_bound']:.3f} "
                 f"({record['confidence']:.0%} one-sided)", soft_wrap=True)
    stdout.print(f"on these films, parent: sensitivity {_interval(before, 'sensitivity')}, "
                 f"specificity {_interval(before, 'specificity')}, ECE {before['ece']:.3f}",
                 soft_wrap=True)
    stdout.print(f"on these films, site:   sensitivity {_interval(now, 'sensitivity')}, "
                 f"specificity {_interval(now, 'specificity')}, ECE {now['ece']:.3f}, AUC "
                 f"{now['auc']:.3f}", soft_wrap=True)
