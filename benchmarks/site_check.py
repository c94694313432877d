"""Site check: how well it separates other films from the model's validation films.

Usage:
    python benchmarks/site_check.py --data ../shared/data/chest_xray
        --adults ../shared/data/adult_nih [--model PATH] [--n-train 300]

Runs the site check (:func:`pneumoscan.reports.site_check.check_site`, what ``pneumoscan
site-check`` runs) against the model's stored reference (its patient-level validation
images) on:

- the adult films (``--adults``): another population, another hospital;
- the out-of-protocol block of the model's split (blocks of consecutive patients held out
  of training): the same hospital, another period;
- ``--n-train`` of the model's own training images, drawn at random: the same hospital and
  period as the validation images, the nearest to "no shift" there is (the model has
  seen them, so a separation here is the model's memory of its training set);

and prints, for each, the domain classifier's AUC with its 95 % interval, the shares out of
scope and adult, the share called pneumonia, the KS statistic, and the verdict.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from pneumoscan.dataset import training_split
from pneumoscan.inputs import find_images
from pneumoscan.predictor import Predictor
from pneumoscan.reports.site_check import check_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--adults", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--n-train", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    predictor = Predictor.load(args.model)
    split = training_split(predictor.card, args.data)
    rng = np.random.default_rng(0)
    train = [split.train[i] for i in rng.choice(len(split.train), args.n_train, replace=False)]
    sets = {"adult films (adult_nih)": find_images(args.adults),
            "out-of-protocol block": [s.path for s in split.protocol],
            f"{args.n_train} training images": [s.path for s in train]}
    print(f"model {predictor.version}; reference: its patient-level validation images")
    print()
    print("| films | n | domain AUC [95 % CI] | out of scope | adult (in scope) | "
          "called pneumonia (validation) | KS | calibrate? | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, files in sets.items():
        started = time.perf_counter()
        check = check_site(predictor, args.model, files)
        site, ours = check.site, check.reference
        low, high = check.domain_auc_ci95
        print(f"| {name} | {site.n} | {check.domain_auc:.3f} [{low:.3f}, {high:.3f}] | "
              f"{site.out_of_scope / site.n:.1%} | "
              f"{site.adult / max(site.in_scope, 1):.1%} | "
              f"{site.positive / max(site.applicable, 1):.1%} "
              f"({ours.positive / max(ours.applicable, 1):.1%}) | "
              f"{check.ks_statistic:.2f} | {'yes' if check.calibrate else 'no'} | "
              f"{time.perf_counter() - started:.0f} |")
        print(f"|  | verdict: {check.verdict[0]} |")


if __name__ == "__main__":
    main()
