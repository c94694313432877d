"""Site calibration: how many of a site's labelled films it takes, measured.

Usage:
    python benchmarks/site_calibration.py --data ../shared/data/chest_xray [--model PATH]
        [--sizes 40 80 160] [--draws 20] [--sensitivity 0.95] [--confidence 0.95]
        [--shift NAME]

The out-of-protocol block of the model's split (whole blocks of consecutive patients held
out of training, rebuilt from the config in its model.json) stands in for a site: a later
period of the hospital with its own settings. The model runs on it through the Predictor;
only the films whose result applies count, as in ``pneumoscan calibrate``. For each size n,
``draws`` times: n films drawn at random are fitted on (:func:`fit_site`, the function
``calibrate`` uses), and the rest are scored at the refitted calibration and threshold.
Prints the mean ECE, sensitivity, specificity and accuracy on the rest, the share of draws
whose held-out sensitivity reaches the requested one, and the first row, the shipped
calibration and threshold on the whole block.

With ``--shift NAME`` (a shift of :mod:`pneumoscan.fitting.shifts`, e.g. "white border 8%")
every film of the block is first changed so (and written as PNG to a temporary folder):
a site whose films the model sees differently, where its own calibration no longer holds.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from pneumoscan.calibration import apply_temperature, calibrated_logits
from pneumoscan.dataset import Sample, training_split
from pneumoscan.fitting.shifts import SHIFTS, shift_by_name
from pneumoscan.fitting.site_calibration import count_films, fit_site
from pneumoscan.metrics import compute_metrics
from pneumoscan.predictor import Predictor

logger = logging.getLogger("site_calibration")


def score(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    figures = compute_metrics(labels, probabilities, threshold, n_boot=0)
    return {key: float(figures[key]) for key in ("ece", "sensitivity", "specificity",
                                                   "accuracy")}


def shifted_copies(predictor: Predictor, samples: list[Sample], name: str,
                   folder: Path) -> list[Sample]:
    """``samples`` under the shift ``name``, written as PNG into ``folder``."""
    shift = shift_by_name(name)
    copies = []
    for i, sample in enumerate(samples):
        pixels = predictor.decode(sample.path).pixels
        changed = shift.apply(pixels, np.random.default_rng([0, SHIFTS.index(shift), i]))
        target = folder / f"{i:05d}.png"
        Image.fromarray(changed).save(target)
        copies.append(replace(sample, path=target))
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 80, 160])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--sensitivity", type=float, default=0.95)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--shift", default=None, help="a shift of the shift suite, by name")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    predictor = Predictor.load(args.model)
    block = training_split(predictor.card, args.data).protocol
    with tempfile.TemporaryDirectory() as folder:
        if args.shift:
            block = shifted_copies(predictor, block, args.shift, Path(folder))
        counted = count_films(predictor, block, batch_size=32)
    labels = np.array([s.label for s in counted.samples], dtype=int)
    probabilities = counted.probabilities
    print(f"model {predictor.version}; out-of-protocol block"
          f"{' under ' + repr(args.shift) if args.shift else ''}: {len(block)} films, "
          f"{len(labels)} count ({int((labels == 0).sum())} normal, {int(labels.sum())} "
          f"pneumonia), left out {counted.excluded}")
    if min(int((labels == 0).sum()), int(labels.sum())) < 20:
        print("too few films count to calibrate on (the scope or population check left "
              "them out)")
        return
    print(f"target sensitivity {args.sensitivity}, one-sided {args.confidence:.0%} bound; "
          f"{args.draws} draws each; fitted on n, scored on the rest")
    print()
    print("| local labelled films | ECE | sensitivity | specificity | accuracy | "
          "draws reaching the target |")
    print("|---|---|---|---|---|---|")
    shipped = score(labels, probabilities, predictor.card.threshold)
    print(f"| none (shipped) | {shipped['ece']:.3f} | {shipped['sensitivity']:.3f} | "
          f"{shipped['specificity']:.3f} | {shipped['accuracy']:.1%} | "
          f"{'yes' if shipped['sensitivity'] >= args.sensitivity else 'no'} |")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        if size >= len(labels) - 20:
            print(f"| {size} | (the block has only {len(labels)} films) |")
            continue
        rows = []
        for _ in range(args.draws):
            chosen = np.zeros(len(labels), bool)
            chosen[rng.choice(len(labels), size, replace=False)] = True
            if labels[chosen].min() == labels[chosen].max():
                continue  # one class only: calibrate refuses such a sample
            fit = fit_site(probabilities[chosen], labels[chosen], predictor.card,
                           sensitivity=args.sensitivity, confidence=args.confidence)
            # the rest under the site card's calibration, from the parent's probabilities
            raw = (calibrated_logits(probabilities[~chosen]) - predictor.card.bias) \
                * predictor.card.temperature
            site = apply_temperature(raw, fit.temperature, fit.bias)
            rows.append(score(labels[~chosen], site, fit.threshold.threshold))
        mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        reached = np.mean([r["sensitivity"] >= args.sensitivity for r in rows])
        print(f"| {size} | {mean['ece']:.3f} | {mean['sensitivity']:.3f} | "
              f"{mean['specificity']:.3f} | {mean['accuracy']:.1%} | {reached:.0%} "
              f"({len(rows)} draws) |")


if __name__ == "__main__":
    main()
