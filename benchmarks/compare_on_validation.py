"""Compare trained models on their patient-level validation split: single, TTA, ensemble.

Usage:
    python benchmarks/compare_on_validation.py --data ../shared/data/chest_xray \\
        runs/effl0_224 runs/effl0_160 [--ensemble runs/effl0_224,runs/effl0_160] [--tta]

Every model must have been trained with the same split (seed and val_fraction in its
model.json); the script checks that. For each model it prints validation AUC with a
bootstrap CI, sensitivity and specificity with Wilson CIs at the model's own threshold,
and the single-image latency. TTA and ensembles get a temperature and a threshold refitted
on validation with the same rule as training, so their figures are as optimistic as the
single models' (all numbers here are validation numbers, not test numbers).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pneumoscan.calibration import apply_temperature, choose_threshold, fit_temperature
from pneumoscan.dataset import discover, split_for_training
from pneumoscan.fitting.logits import predict_logits
from pneumoscan.image_cache import load_resized
from pneumoscan.metrics import compute_metrics
from pneumoscan.modelfile import load_model
from pneumoscan.models import count_parameters
from pneumoscan.preprocessing import normalize


def _split(data: Path, config: dict) -> list:
    pool = discover(data).splits.get("train") or discover(data).splits["all"]
    return split_for_training(pool, config["val_fraction"], config["seed"],
                              config.get("protocol_fraction", 0.0)).validation


def _latency_ms(model: torch.nn.Module, size: int, repeats: int = 20) -> float:
    x = torch.from_numpy(normalize(np.full((1, size, size), 128, np.uint8), _cfg(size)))
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            start = time.perf_counter()
            model(x)
            if i >= 3:
                times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _cfg(size: int):
    from pneumoscan.preprocessing import PreprocessConfig

    return PreprocessConfig(image_size=size)


def _row(name: str, labels: np.ndarray, probability: np.ndarray, threshold: float,
         extra: str) -> str:
    m = compute_metrics(labels, probability, threshold)
    return (f"| {name} | {m['auc']:.4f} [{m['auc_ci95'][0]:.4f}, {m['auc_ci95'][1]:.4f}] | "
            f"{m['sensitivity']:.3f} [{m['sensitivity_ci95'][0]:.3f}, "
            f"{m['sensitivity_ci95'][1]:.3f}] | {m['specificity']:.3f} "
            f"[{m['specificity_ci95'][0]:.3f}, {m['specificity_ci95'][1]:.3f}] | "
            f"{threshold:.2f} | {extra} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tta", action="store_true", help="also evaluate with TTA")
    parser.add_argument("--ensemble", action="append", default=[],
                        help="comma-separated run folders to average (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(2)

    print("| model | val AUC [95% CI] | sensitivity [95% CI] | specificity [95% CI] | "
          "threshold | params / latency |")
    print("|---|---|---|---|---|---|")
    calibrated: dict[str, np.ndarray] = {}
    labels_ref: np.ndarray | None = None
    files_ref: list[str] | None = None
    for run in args.runs:
        model, card = load_model(run)
        config = card.training["config"]
        val = _split(args.data, config)
        pixels, bad = load_resized(val, card.preprocessing.image_size)
        kept = [s for i, s in enumerate(val) if i not in set(bad)]
        labels = np.array([s.label for s in kept])
        files = [s.path.name for s in kept]
        if files_ref is not None and files != files_ref:
            raise SystemExit(f"{run}: its validation split differs from the first model's")
        labels_ref, files_ref = labels, files
        logits = predict_logits(model, pixels, card.preprocessing)
        probability = apply_temperature(logits[:, 0], card.temperature, card.bias)
        calibrated[str(run)] = probability
        extra = (f"{count_parameters(model) / 1e6:.1f} M / "
                 f"{_latency_ms(model, card.preprocessing.image_size):.1f} ms")
        print(_row(f"{run.name}", labels, probability, card.threshold, extra))
        if args.tta:
            tta_logits = predict_logits(model, pixels, card.preprocessing, tta=True)
            temperature = fit_temperature(tta_logits[:, 0], labels)
            tta_probability = apply_temperature(tta_logits[:, 0], temperature)
            calibrated[f"{run}+tta"] = tta_probability
            print(_row(f"{run.name} + TTA (5 views)", labels, tta_probability,
                       choose_threshold(labels, tta_probability), "5x latency"))
    assert labels_ref is not None
    for spec in args.ensemble:
        members = [m.strip() for m in spec.split(",")]
        missing = [m for m in members if m not in calibrated]
        if missing:
            raise SystemExit(f"ensemble members not evaluated above: {missing}")
        probability = np.mean([calibrated[m] for m in members], axis=0)
        print(_row("ensemble: " + " + ".join(Path(m).name for m in members), labels_ref,
                   probability, choose_threshold(labels_ref, probability), "sum of members"))


if __name__ == "__main__":
    main()
