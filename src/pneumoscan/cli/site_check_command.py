"""``pneumoscan site-check``: a site's unlabelled films against the model's validation films."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from pneumoscan.cli.console import (
    configure_logging,
    console,
    progress_bar,
    silence_header_messages,
    stdout,
    user_errors,
)


def site_check_command(
    folder: Path = typer.Argument(..., metavar="DIR", help="A folder of the site's films "
                                  "(.jpeg .jpg .png .dcm), searched recursively; no labels "
                                  "needed."),
    out: Path | None = typer.Option(None, "--out", metavar="FILE", help="Also write an HTML "
                                    "report with the histograms."),
    model: Path | None = typer.Option(None, "--model", metavar="PATH", help="Model folder or "
                                      ".safetensors file (default: the shipped model)."),
    backend: str = typer.Option("auto", "--backend", metavar="NAME", help="auto, onnx or "
                                "torch."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details."),
) -> None:
    """Check a site's films before go-live.

    Compares unlabelled films with the model's own validation films: the share out of
    scope, the population mix, P(pneumonia), and how well a classifier tells the two
    apart. Says whether the validation figures can be expected to hold and whether to run
    `pneumoscan calibrate`."""
    configure_logging(verbose)
    silence_header_messages()
    from pneumoscan.inputs import find_images
    from pneumoscan.predictor import Predictor
    from pneumoscan.reports.site_check import check_site
    from pneumoscan.reports.site_check_report import write_site_check_report

    with user_errors():
        if out is not None and out.suffix.lower() not in (".html", ".htm"):
            raise ValueError(f"--out {out}: the report is an HTML file; name it .html")
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder of films")
        files = find_images(folder)
        predictor = Predictor.load(model, backend=backend)
        with progress_bar() as bar:
            task = bar.add_task("reading films", total=len(files))
            check = check_site(predictor, model, files,
                               progress=lambda n: bar.advance(task, n))
        if out is not None:
            write_site_check_report(out, check, source=str(folder))
    site, ours = check.site, check.reference
    low, high = check.domain_auc_ci95
    stdout.print(f"{site.n} films compared ({check.unreadable} unreadable) with "
                 f"{ours.n} validation films of {check.model}", soft_wrap=True)
    stdout.print(f"out of scope {site.out_of_scope / site.n:.1%} (validation "
                 f"{ours.out_of_scope / ours.n:.1%}); adult "
                 f"{site.adult / max(site.in_scope, 1):.1%} of those in scope; called "
                 f"pneumonia {site.positive / max(site.applicable, 1):.1%} (validation "
                 f"{ours.positive / max(ours.applicable, 1):.1%})", soft_wrap=True)
    stdout.print(f"domain classifier AUC {check.domain_auc:.3f} [{low:.3f}, {high:.3f}] "
                 "(0.5: indistinguishable)", soft_wrap=True)
    for sentence in check.verdict:
        stdout.print(sentence)
    stdout.print(f"run `pneumoscan calibrate` before go-live: "
                 f"{'yes' if check.calibrate else 'advised, not required'}")
    if out is not None:
        console.print(f"report: {escape(str(out))}")
