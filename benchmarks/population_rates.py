"""Population check (issues 16, 22): children called adult, adults called adult, source by
source, and how the model scores on the adult films we have.

Usage:
    python benchmarks/population_rates.py --data ../shared/data [--model PATH] [--shifts]
        [--no-loso] [--markdown]

``--data`` is the shared data folder (``chest_xray/``, ``adult_nih/``, ``adult_other/``,
``dicom/``). For a model (default: the shipped one), through the full Predictor on the
files:

- pediatric validation images called adult: the model's patient-level validation split and
  its out-of-protocol split (both rebuilt from its card; never fitted on), 95 % Wilson
  intervals. Target: at most 1 %;
- with ``--shifts``: the same rate on the patient-level split under each shift of the
  shift suite (crops, borders, markers, tone...), the worst named;
- held-out adult films called adult, source by source: the patients of each source the
  classifier's fit left out (the folders and split stored with it), then the six shared
  DICOMs by the image alone (their age tags removed) and by their headers. The check
  answers for every chest radiograph, in scope or out of it only by the model's features
  (:func:`~pneumoscan.scope.is_chest_radiograph`). Target: at least 95 %;
- leave one source out (unless ``--no-loso``): for each adult source, a classifier fitted
  as ``pneumoscan fit-population`` fits one, on the pediatric training images and every
  film of the other sources, then the share of that source's films called adult (a
  hospital the check has never seen; target at least 95 % each) and of the pediatric
  validation sets (target at most 1 %). The population is assessed on the Predictor's own
  inputs (decoded, resized, scope-checked once; checked against the Predictor's verdicts
  with the stored classifier);
- the cost of the image-based check per image, on features the model computes anyway;
- the model's pneumonia output on the labelled adult films: what a user would get on
  adults. NLP-mined or collection labels and few normals: a description, not accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pneumoscan.dataset import Sample, training_split
from pneumoscan.fitted_state import population_notes
from pneumoscan.fitting.population_fitting import (
    adult_features,
    find_adult_sources,
    fit_classifier,
    leave_one_source_out,
    pediatric_features,
    split_sources,
)
from pneumoscan.fitting.shifts import SOURCE_SIZE, shifted_sets
from pneumoscan.image_cache import load_resized
from pneumoscan.imaging import DecodedImage, decode_image
from pneumoscan.metrics import compute_metrics, wilson_interval
from pneumoscan.population import (
    ADULT,
    ADULT_HOLDOUT_FRACTION,
    ADULT_SPLIT_SEED,
    PopulationClassifier,
    PopulationResult,
    assess_population,
)
from pneumoscan.predictor import Prediction, Predictor
from pneumoscan.preprocessing import normalize, resize_all
from pneumoscan.scope import assess_scope, is_chest_radiograph

#: The adult folders under --data when the stored classifier names none.
DEFAULT_ADULT_FOLDERS = ("adult_nih", "adult_other")


@dataclass(frozen=True)
class CheckInputs:
    """What the Predictor hands the population check for each image: pooled features
    ``(N, C)``, the model input ``(N, S, S)`` and whether the scope check found a chest
    radiograph ``(N,)`` (:func:`~pneumoscan.scope.is_chest_radiograph`)."""

    pooled: np.ndarray
    resized: np.ndarray
    chest_radiograph: np.ndarray

    def assess(self, classifier: PopulationClassifier) -> list[PopulationResult]:
        """:func:`assess_population` of each image (no DICOM header) with ``classifier``."""
        return [assess_population(None, pooled, resized, bool(chest), classifier)
                for pooled, resized, chest in zip(self.pooled, self.resized,
                                                  self.chest_radiograph, strict=True)]

    def called_adult(self, classifier: PopulationClassifier) -> int:
        """How many images :meth:`assess` calls adult."""
        return sum(result.population == ADULT for result in self.assess(classifier))


def check_inputs(predictor: Predictor, samples: Sequence[Sample]) -> CheckInputs:
    """:class:`CheckInputs` of files, as :meth:`Predictor.predict_decoded` makes them."""
    pooled, resized, chest_radiograph = [], [], []
    for start in range(0, len(samples), 32):
        decoded = [predictor.decode(s.path) for s in samples[start:start + 32]]
        config = predictor.card.preprocessing
        batch = resize_all((d.pixels for d in decoded), config.image_size, config.source_size)
        features = predictor.backend.run(normalize(batch, predictor.card.preprocessing))[2]
        verdicts = [assess_scope(d, image, vector, predictor.scope)
                    for d, image, vector in zip(decoded, batch, features, strict=True)]
        chest_radiograph += [is_chest_radiograph(verdict) for verdict in verdicts]
        pooled.append(features)
        resized.append(batch)
    return CheckInputs(np.concatenate(pooled), np.concatenate(resized),
                       np.array(chest_radiograph))


def predict_samples(predictor: Predictor, samples: Sequence[Sample]) -> list[Prediction]:
    """Predictions of files, in order (an unreadable file stops the benchmark)."""
    results = list(predictor.predict_files([s.path for s in samples], batch_size=32))
    broken = [r.error for r in results if r.prediction is None]
    if broken:
        raise RuntimeError(f"{len(broken)} unreadable image(s): {broken[:3]}")
    return [r.prediction for r in results if r.prediction is not None]


def share(called: int, total: int) -> str:
    """``called/total = rate [low, high]`` with the 95 % Wilson interval."""
    low, high = wilson_interval(called, total)
    return f"{called}/{total} = {called / total:.1%} [{low:.1%}, {high:.1%}]"


def adult_share(predictions: Sequence[Prediction]) -> str:
    """How many are called adult, of how many, the rate and its 95 % interval."""
    return share(sum(p.population == ADULT for p in predictions), len(predictions))


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


def ages(folders: Sequence[Path]) -> dict[Path, str]:
    """Age of each adult film as its ``labels.csv`` writes it ("" when not recorded)."""
    found = {}
    for folder in folders:
        labels = folder / "labels.csv"
        if labels.is_file():
            with labels.open(newline="") as handle:
                found.update({folder / row["file"]: row.get("age") or ""
                              for row in csv.DictReader(handle)})
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="../shared/data")
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--shifts", action="store_true", help="also the shifted validation")
    parser.add_argument("--no-loso", action="store_true",
                        help="skip the leave-one-source-out fits")
    parser.add_argument("--markdown", action="store_true", help="tables as Markdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    predictor = Predictor.load(args.model)
    if predictor.population is None:
        raise SystemExit("the model has no population classifier: run pneumoscan "
                         "fit-population MODEL --data DATA --adults ADULTS")
    notes = population_notes(args.model)
    folders = [args.data / name
               for name in json.loads(notes.get("adults", json.dumps(DEFAULT_ADULT_FOLDERS)))]
    print(f"model {predictor.version}; population classifier fitted on "
          f"{predictor.population.n_pediatric} pediatric and {predictor.population.n_adult} "
          f"adult images (adults from {', '.join(f.name for f in folders)}); threshold "
          f"P(adult) > {predictor.population.threshold:.3f}")

    split = training_split(predictor.card, args.data / "chest_xray")
    pediatric = {"patient-level validation": split.validation,
                 "out-of-protocol validation": split.protocol}
    rows = [(f"pediatric {name} called adult (target <= 1 %)",
             adult_share(predict_samples(predictor, samples)))
            for name, samples in pediatric.items()]

    sources = find_adult_sources(folders)
    splits = split_sources(sources,
                           float(notes.get("holdout_fraction", ADULT_HOLDOUT_FRACTION)),
                           int(notes.get("seed", ADULT_SPLIT_SEED)))
    everyone = [s for films in sources.values() for s in films]
    verdicts = dict(zip((s.path for s in everyone), predict_samples(predictor, everyone),
                        strict=True))
    age_of = ages(folders)
    held_out_all: list[Prediction] = []
    for name, adult_split in splits.items():
        held_out = [verdicts[s.path] for s in adult_split.held_out]
        held_out_all += held_out
        missed = [age_of.get(s.path) or "?" for s in adult_split.held_out
                  if verdicts[s.path].population != ADULT]
        rows.append((f"held-out {name} films called adult (target >= 95 %)",
                     adult_share(held_out) + (f"; ages missed: {', '.join(sorted(missed))}"
                                              if missed else "")))
    rows.append(("held-out adult films of all sources called adult",
                 adult_share(held_out_all)))
    rows.append(("adult films the classifier was fitted on (in-sample)",
                 adult_share([verdicts[s.path] for split_ in splits.values()
                              for s in split_.fit])))

    dicoms = sorted((args.data / "dicom").glob("*.dcm"))
    by_image, by_header = [], []
    for path in dicoms:
        decoded = decode_image(path)
        assert decoded.dicom is not None
        anonymous = replace(decoded, dicom=replace(decoded.dicom, patient_age="",
                                                   birth_date=""))
        by_image.append(predictor.predict_decoded([anonymous], heatmap=False)[0])
        by_header.append(predictor.predict_decoded([decoded], heatmap=False)[0])
    out_of_scope = sum(not p.in_scope for p in by_image)
    rows.append(("shared adult DICOMs called adult, image only (age tags removed)",
                 adult_share(by_image) + f"; {out_of_scope} of them out of scope"))
    rows.append(("shared adult DICOMs called adult, as they are (header age where present)",
                 adult_share(by_header)))

    if args.shifts:
        rates = shifted_rates(predictor, split.validation)
        worst = max(rates, key=lambda item: item[1])
        rows.append(("pediatric validation called adult under shifts: worst",
                     f"{worst[1]:.1%} ({worst[0]}); mean "
                     f"{np.mean([rate for _, rate in rates]):.2%}"))

    labelled = [s for s in everyone if s.path.parent.name in ("NORMAL", "PNEUMONIA")]
    labels = np.array([s.label for s in labelled])
    probabilities = np.array([verdicts[s.path].probability for s in labelled])
    metrics = compute_metrics(labels, probabilities, predictor.card.threshold)
    rows.append((f"model on the {len(labelled)} labelled adult films: AUC "
                 f"({metrics['n_negative']} normal, {metrics['n_positive']} pneumonia)",
                 f"{metrics['auc']:.3f} [{metrics['auc_ci95'][0]:.3f}, "
                 f"{metrics['auc_ci95'][1]:.3f}]"))
    rows.append(("  sensitivity / specificity at the model's threshold",
                 f"{metrics['sensitivity']:.3f} / {metrics['specificity']:.3f} "
                 f"({metrics['tn']} of {metrics['n_negative']} normals called normal)"))
    rows.append(("cost of the image check per image (thumbnail + dot product)",
                 f"{check_cost_ms(predictor):.3f} ms"))
    _print(["measure", "value"], rows, args.markdown)

    if not args.no_loso:
        _print(["source left out", "adults fitted on", "threshold",
                "its films called adult (>= 95 %)", "patient-level val. called adult (<= 1 %)",
                "out-of-protocol val. called adult (<= 1 %)"],
               leave_one_source_out_rows(args.model, predictor, sources, split.train,
                                         pediatric, verdicts), args.markdown)


def leave_one_source_out_rows(model: Path | None, predictor: Predictor,
                              sources: dict[str, list[Sample]], train: Sequence[Sample],
                              pediatric: dict[str, list[Sample]],
                              verdicts: dict[Path, Prediction]) -> list[tuple[str, ...]]:
    """One row per source: fitted without it (as ``fit-population`` fits), measured on it
    and on the pediatric validation sets."""
    fitting = Predictor.load(model, backend="torch")  # as fit_population reads features
    children = pediatric_features(fitting, train)
    adults = {name: adult_features(fitting, films) for name, films in sources.items()}
    inputs = {name: check_inputs(predictor, films) for name, films in sources.items()}
    inputs.update({name: check_inputs(predictor, films) for name, films in pediatric.items()})
    assert predictor.population is not None
    for name, films in sources.items():  # the mirror of the Predictor is faithful
        mirrored = [r.probability for r in inputs[name].assess(predictor.population)]
        expected = [verdicts[s.path].population_probability for s in films]
        if not np.allclose(np.array(mirrored, float), np.array(expected, float), atol=1e-3,
                           equal_nan=True):
            raise RuntimeError(f"{name}: check inputs disagree with the Predictor")
    rows = []
    for fold in leave_one_source_out(sources):
        classifier = fit_classifier(children, np.concatenate(
            [adults[name] for name in sources if name != fold.source]))
        cells = [share(inputs[name].called_adult(classifier), len(inputs[name].chest_radiograph))
                 for name in (fold.source, *pediatric)]
        rows.append((fold.source, f"{len(fold.fit)} films of "
                     f"{', '.join(name for name in sources if name != fold.source)}",
                     f"{classifier.threshold:.3f}", *cells))
    return rows


def check_cost_ms(predictor: Predictor, repeats: int = 2000) -> float:
    """Milliseconds per call of the image-based check on features the model has made."""
    size = predictor.card.preprocessing.image_size
    rng = np.random.default_rng(0)
    resized = rng.integers(0, 256, (size, size), dtype=np.uint8)
    features = int(predictor.pooled_features(resized[None]).shape[1])
    pooled = rng.normal(size=(features,)).astype(np.float32)
    start = time.perf_counter()
    for _ in range(repeats):
        assess_population(None, pooled, resized, True, predictor.population)
    return (time.perf_counter() - start) / repeats * 1e3


def _print(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> None:
    if markdown:
        print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(cell.strip() for cell in row) + " |")
        return
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, *rows]:
        print("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
