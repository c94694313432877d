"""``pneumoscan fit-population``: fit a model's adult-vs-child check (issue 16)."""

from __future__ import annotations

from pathlib import Path

import typer

from pneumoscan.cli.console import configure_logging, stdout, user_errors
from pneumoscan.extras import require
from pneumoscan.population import ADULT_HOLDOUT_FRACTION, ADULT_SPLIT_SEED


def fit_population_command(
    model: Path = typer.Argument(..., help="Model folder or .safetensors file (the shipped "
                                 "one: src/pneumoscan/weights/default.safetensors)."),
    data: Path = typer.Option(..., "--data", help="The data root the model was trained on; "
                              "its training split is the pediatric side of the fit."),
    adults: Path = typer.Option(..., "--adults", help="A folder of adult frontal chest "
                                "radiographs (e.g. ../shared/data/adult_nih); a labels.csv "
                                "with file and patient_id columns groups them by patient."),
    holdout_fraction: float = typer.Option(ADULT_HOLDOUT_FRACTION, "--holdout-fraction",
                                           min=0.05, max=0.5, help="Share of the adult "
                                           "patients left out of the fit, to measure on."),
    seed: int = typer.Option(ADULT_SPLIT_SEED, "--seed", help="Seed of the adult split."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Decoded-image cache "
                                          "(default ~/.cache/pneumoscan)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Fit a model's adult-or-child check.

    Fits the population check of MODEL (adult or child, from the image) and stores it
    beside the weights (model.population.safetensors, or NAME.population.safetensors).

    Fitted on the model's pediatric training split and the adult films of --adults, less a
    held-out share of their patients. Measure it with benchmarks/population_rates.py. A
    model without it calls every image without an age in its DICOM header "unknown"."""
    configure_logging(verbose)
    with user_errors():
        require("fit-population", ("torch",), "torch")  # it runs the model with PyTorch
        from pneumoscan.dataset import training_split
        from pneumoscan.fitting.population_fitting import (
            describe_population,
            fit_population_on_folder,
        )
        from pneumoscan.modelfile import read_card

        split = training_split(read_card(model), data)
        classifier, path, adult_split = fit_population_on_folder(
            model, split.train, adults, holdout_fraction=holdout_fraction, seed=seed,
            cache_dir=cache_dir)
    stdout.print(describe_population(classifier))
    stdout.print(f"{len(adult_split.held_out)} adult images of "
                 f"{len({s.patient_id for s in adult_split.held_out})} patients held out")
    stdout.print(f"wrote {path}")
