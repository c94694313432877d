"""Population check (issue 16): children called adult, adults called adult, and how the
model scores on the adult films we have.

Usage:
    python benchmarks/population_rates.py --data ../shared/data [--model PATH] [--shifts]
        [--markdown]

``--data`` is the shared data folder (``chest_xray/``, ``adult_nih/``, ``dicom/``). For a
model (default: the shipped one), through the full Predictor on the files:

- pediatric validation images called adult: the model's patient-level validation split and
  its out-of-protocol split (both rebuilt from its card; never fitted on), 95 % Wilson
  intervals. Target: at most 1 %;
- with ``--shifts``: the same rate on the patient-level split under each shift of the
  shift suite (crops, borders, markers, tone...), the worst named;
- held-out adult films called adult: the adult patients the classifier's fit left out
  (the split stored with it), then the six shared DICOMs by the image alone (their age
  tags removed; the one whose header inverts it is out of scope, so "unknown") and by
  their headers. Target: at least 95 %;
- the cost of the image-based check per image, on features the model computes anyway;
- the model's pneumonia output on all 310 adult films: what a user would get on adults.
  NLP-mined labels and 18 normals: read it as a description, not as accuracy.
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from pneumoscan.dataset import Sample, training_split
from pneumoscan.fitted_state import population_notes
from pneumoscan.fitting.population_fitting import find_adult_images, split_adults
from pneumoscan.fitting.shifts import SOURCE_SIZE, shifted_sets
from pneumoscan.image_cache import load_resized
from pneumoscan.imaging import DecodedImage, decode_image
from pneumoscan.metrics import compute_metrics, wilson_interval
from pneumoscan.population import (
    ADULT,
    ADULT_HOLDOUT_FRACTION,
    ADULT_SPLIT_SEED,
    assess_population,
)
from pneumoscan.predictor import Prediction, Predictor


def predict_samples(predictor: Predictor, samples: Sequence[Sample]) -> list[Prediction]:
    """Predictions of files, in order (an unreadable file stops the benchmark)."""
    results = list(predictor.predict_files([s.path for s in samples], batch_size=32))
    broken = [r.error for r in results if r.prediction is None]
    if broken:
        raise RuntimeError(f"{len(broken)} unreadable image(s): {broken[:3]}")
    return [r.prediction for r in results if r.prediction is not None]


def adult_share(predictions: Sequence[Prediction]) -> tuple[int, int, str]:
    """How many are called adult, of how many, and the rate with its 95 % interval."""
    called = sum(p.population == ADULT for p in predictions)
    low, high = wilson_interval(called, len(predictions))
    return called, len(predictions), (f"{called}/{len(predictions)} = "
                                      f"{called / len(predictions):.1%} [{low:.1%}, {high:.1%}]")


def shifted_rates(predictor: Predictor, samples: Sequence[Sample]) -> list[tuple[str, float]]:
    """Share called adult under each shift of the suite (images at source size first)."""
    source, _ = load_resized(samples, SOURCE_SIZE)
    rates = []
    for shift, images in shifted_sets(source):
        decoded = [DecodedImage(image, "array", False) for image in images]
        predictions = [p for start in range(0, len(decoded), 64)
                       for p in predictor.predict_decoded(decoded[start:start + 64],
                                                          heatmap=False)]
        rates.append((shift.name, float(np.mean([p.population == ADULT
                                                 for p in predictions]))))
    return rates


def ages(adults_dir: Path) -> dict[str, int]:
    """Age of each adult film by file (``labels.csv``), for naming the misses."""
    with (adults_dir / "labels.csv").open(newline="") as handle:
        return {row["file"]: int(row["age"]) for row in csv.DictReader(handle)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="../shared/data")
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--shifts", action="store_true", help="also the shifted validation")
    parser.add_argument("--markdown", action="store_true", help="tables as Markdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    predictor = Predictor.load(args.model)
    if predictor.population is None:
        raise SystemExit("the model has no population classifier: run pneumoscan "
                         "fit-population MODEL --data DATA --adults ADULTS")
    notes = population_notes(args.model)
    print(f"model {predictor.version}; population classifier fitted on "
          f"{predictor.population.n_pediatric} pediatric and {predictor.population.n_adult} "
          f"adult images; threshold P(adult) > {predictor.population.threshold:.3f}")

    split = training_split(predictor.card, args.data / "chest_xray")
    rows = []
    for name, samples in (("patient-level validation", split.validation),
                          ("out-of-protocol validation", split.protocol)):
        rows.append((f"pediatric {name} called adult (target <= 1 %)",
                     adult_share(predict_samples(predictor, samples))[2]))

    adults_dir = args.data / "adult_nih"
    adult_split = split_adults(find_adult_images(adults_dir),
                               float(notes.get("holdout_fraction", ADULT_HOLDOUT_FRACTION)),
                               int(notes.get("seed", ADULT_SPLIT_SEED)))
    held_out = predict_samples(predictor, adult_split.held_out)
    rows.append(("held-out adult films called adult (target >= 95 %)",
                 adult_share(held_out)[2]))
    age_of = ages(adults_dir)
    missed = [age_of.get(s.path.relative_to(adults_dir).as_posix(), -1)
              for s, p in zip(adult_split.held_out, held_out, strict=True)
              if p.population != ADULT]
    rows.append(("  ages of the held-out adults missed", ", ".join(map(str, sorted(missed)))
                 or "none"))
    fitted = predict_samples(predictor, adult_split.fit)
    rows.append(("adult films the classifier was fitted on (in-sample)",
                 adult_share(fitted)[2]))

    dicoms = sorted((args.data / "dicom").glob("*.dcm"))
    by_image, by_header = [], []
    for path in dicoms:
        decoded = decode_image(path)
        assert decoded.dicom is not None
        anonymous = replace(decoded, dicom=replace(decoded.dicom, patient_age="",
                                                   birth_date=""))
        by_image.append(predictor.predict_decoded([anonymous], heatmap=False)[0])
        by_header.append(predictor.predict_decoded([decoded], heatmap=False)[0])
    in_scope = [p for p in by_image if p.in_scope]
    rows.append(("shared adult DICOMs in scope called adult, image only (age tags removed)",
                 adult_share(in_scope)[2] + f"; {len(by_image) - len(in_scope)} out of scope "
                 "(population unknown)"))
    rows.append(("shared adult DICOMs called adult, as they are (header age where present)",
                 adult_share(by_header)[2]))
    total_held = len(held_out) + len(in_scope)
    called = sum(p.population == ADULT for p in [*held_out, *in_scope])
    low, high = wilson_interval(called, total_held)
    rows.append(("all held-out adults in scope (NIH held out + DICOMs by image)",
                 f"{called}/{total_held} = {called / total_held:.1%} "
                 f"[{low:.1%}, {high:.1%}]"))

    if args.shifts:
        rates = shifted_rates(predictor, split.validation)
        worst = max(rates, key=lambda item: item[1])
        rows.append(("pediatric validation called adult under shifts: worst",
                     f"{worst[1]:.1%} ({worst[0]}); mean "
                     f"{np.mean([rate for _, rate in rates]):.2%}"))

    everyone = [*adult_split.fit, *adult_split.held_out]
    adult_predictions = [*fitted, *held_out]
    labels = np.array([s.label for s in everyone])
    probabilities = np.array([p.probability for p in adult_predictions])
    metrics = compute_metrics(labels, probabilities, predictor.card.threshold)
    rows.append(("model on all 310 adult films: AUC (18 normal, 292 pneumonia; NLP labels)",
                 f"{metrics['auc']:.3f} [{metrics['auc_ci95'][0]:.3f}, "
                 f"{metrics['auc_ci95'][1]:.3f}]"))
    rows.append(("  sensitivity / specificity at the model's threshold",
                 f"{metrics['sensitivity']:.3f} / {metrics['specificity']:.3f} "
                 f"({metrics['tn']} of {metrics['n_negative']} normals called normal)"))
    rows.append(("  share called PNEUMONIA, in scope",
                 f"{np.mean(probabilities >= predictor.card.threshold):.1%}, "
                 f"{np.mean([p.in_scope for p in adult_predictions]):.1%}"))
    rows.append(("cost of the image check per image (thumbnail + dot product)",
                 f"{check_cost_ms(predictor):.3f} ms"))
    _print(rows, args.markdown)


def check_cost_ms(predictor: Predictor, repeats: int = 2000) -> float:
    """Milliseconds per call of the image-based check on features the model has made."""
    size = predictor.card.preprocessing.image_size
    rng = np.random.default_rng(0)
    resized = rng.integers(0, 256, (size, size), dtype=np.uint8)
    pooled = rng.normal(size=predictor.pooled_features(resized[None]).shape[1]).astype(np.float32)
    start = time.perf_counter()
    for _ in range(repeats):
        assess_population(None, pooled, resized, True, predictor.population)
    return (time.perf_counter() - start) / repeats * 1e3


def _print(rows: list[tuple[str, str]], markdown: bool) -> None:
    if markdown:
        print("\n| measure | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name.strip()} | {value} |")
        return
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
