"""``pneumoscan fit-scope``: fit a model's input-scope check on the images it was trained on."""

from __future__ import annotations

from pathlib import Path

import typer

from pneumoscan.cli.console import configure_logging, stdout, user_errors
from pneumoscan.extras import require
from pneumoscan.scope import FEATURE_MARGIN, TRAINING_EXCEED_FRACTION


def fit_scope_command(
    model: Path = typer.Argument(..., help="Model folder or .safetensors file (the shipped "
                                 "one: src/pneumoscan/weights/default.safetensors)."),
    data: Path = typer.Option(..., "--data", help="The data root the model was trained on; "
                              "its training split is rebuilt from the config in the card."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Decoded-image cache "
                                          "(default ~/.cache/pneumoscan)."),
    exceed_fraction: float = typer.Option(TRAINING_EXCEED_FRACTION, "--exceed-fraction",
                                          min=0.0, max=0.5, help="Share of the training "
                                          "images allowed beyond the cut-offs."),
    feature_margin: float = typer.Option(FEATURE_MARGIN, "--feature-margin", min=1.0,
                                         help="Feature cut-off over its training quantile."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Fit a model's input-scope check.

    Fits the input-scope check of MODEL on its own training images and stores it beside
    the weights (model.scope.safetensors, or NAME.scope.safetensors beside
    NAME.safetensors). `pneumoscan train` does this itself; run it for a model made
    before, or after replacing a model's weights (a fit made for other weights is ignored,
    and such a model calls every image out of scope)."""
    configure_logging(verbose)
    with user_errors():
        require("fit-scope", ("torch",), "torch")  # it runs the model with PyTorch
        from pneumoscan.dataset import training_split
        from pneumoscan.fitting.scope_fitting import describe_scope, fit_scope
        from pneumoscan.modelfile import read_card

        split = training_split(read_card(model), data)
        statistics, path = fit_scope(model, split.train, cache_dir=cache_dir,
                                     exceed_fraction=exceed_fraction,
                                     feature_margin=feature_margin)
    stdout.print(describe_scope(statistics))
    stdout.print(f"wrote {path}")
