"""The shift suite: each model scored on its own validation images under named, seeded
shifts of framing, orientation, burned-in markings, tone, sharpness, resolution and noise,
at its frozen threshold; prints one table per model with the worst case and the mean.

Usage (the README's command; the shipped model by default):
    python benchmarks/shift_suite.py --data ../shared/data/chest_xray [MODEL ...]
        [--split validation|protocol|edge] [--split-of MODEL] [--epochs runs/x] [--markdown]

MODEL is a training output folder or a ``.safetensors`` file with its card. Each model's
validation split is rebuilt from the training config in its card
(:func:`pneumoscan.dataset.split_for_training`): ``validation`` is the patient-level split,
``protocol`` the blocks of consecutive patients held out (models trained with
``protocol_fraction`` > 0 only), ``edge`` the earliest and latest blocks of each series
(models trained with ``edge_blocks`` > 0). ``--split-of MODEL`` scores every model on that
model's split instead of its own, so that two models meet the same images (a model that
trained on some of them is then flattered: say so).
``--epochs RUN`` scores every saved epoch of a run, each
with a temperature and threshold refitted by the training rule, to choose among them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from pneumoscan.calibration import apply_temperature, fit_operating_point
from pneumoscan.dataset import training_split
from pneumoscan.fitting.logits import predict_logits
from pneumoscan.fitting.shift_scores import (
    ShiftScore,
    score_suite,
    shifted_probabilities,
    summarise,
)
from pneumoscan.fitting.shifts import SOURCE_SIZE, shifted_sets
from pneumoscan.image_cache import load_resized
from pneumoscan.modelcard import ModelCard
from pneumoscan.modelfile import load_model
from pneumoscan.models import PneumoniaNet
from pneumoscan.preprocessing import resize_all


def validation_images(data: Path, card: ModelCard, split: str,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The model's own validation images at source size, and their labels."""
    sides = training_split(card, data)  # the split in its card, on the data it names
    samples = {"validation": sides.validation, "protocol": sides.protocol,
               "edge": sides.edge}[split]
    if not samples:
        raise SystemExit(f"this model was trained without a {split} hold-out")
    pixels, bad = load_resized(samples, SOURCE_SIZE)
    labels = np.array([s.label for i, s in enumerate(samples) if i not in set(bad)])
    return pixels, labels


def model_logits(model: PneumoniaNet, card: ModelCard, images: np.ndarray) -> np.ndarray:
    """Pneumonia logits ``(N,)`` of source-size images, through the model's own resize."""
    resized = resize_all(images, card.preprocessing.image_size, card.preprocessing.source_size)
    return predict_logits(model, resized, card.preprocessing)[:, 0]


def print_table(title: str, scores: list[ShiftScore], threshold: float,
                markdown: bool) -> None:
    summary = summarise(scores)
    print(f"\n{title} (threshold {threshold:.2f})")
    sep = " | " if markdown else "  "
    print(("| " if markdown else "") + sep.join(["shift", "AUC", "sensitivity",
                                                  "specificity"]) + (" |" if markdown else ""))
    if markdown:
        print("|---|---|---|---|")
    for s in scores:
        cells = [f"{s.name:<28}", f"{s.auc:.4f}", f"{s.sensitivity:.3f}", f"{s.specificity:.3f}"]
        print(("| " if markdown else "") + sep.join(cells) + (" |" if markdown else ""))
    rows = [("worst case", f"{summary.worst_auc:.4f} ({summary.worst_auc_shift})",
             f"{summary.worst_sensitivity:.3f} ({summary.worst_sensitivity_shift})",
             f"{summary.worst_specificity:.3f} ({summary.worst_specificity_shift})"),
            ("mean over shifts", f"{summary.mean_auc:.4f}", f"{summary.mean_sensitivity:.3f}",
             f"{summary.mean_specificity:.3f}")]
    for name, *cells in rows:
        line = sep.join([f"**{name}**" if markdown else f"{name:<28}", *cells])
        print(("| " if markdown else "") + line + (" |" if markdown else ""))


def score_model(path: Path, data: Path, split: str, markdown: bool,
                split_of: ModelCard | None = None) -> None:
    model, card = load_model(path)
    images, labels = validation_images(data, split_of or card, split)
    started = time.perf_counter()
    probabilities = shifted_probabilities(
        lambda x: apply_temperature(model_logits(model, card, x), card.temperature, card.bias),
        images)
    scores = score_suite(labels, probabilities, card.threshold)
    whose = "its" if split_of is None else f"{split_of.version}'s"
    print_table(f"{card.version or path} on {whose} {split} split ({len(labels)} images, "
                f"{int((labels == 0).sum())} normal), {time.perf_counter() - started:.0f} s",
                scores, card.threshold, markdown)


def score_epochs(run: Path, data: Path, split: str, markdown: bool, last: int) -> None:
    """Every saved epoch of ``run``, each with its operating point refitted on the
    patient-level validation split by the training rule."""
    model, card = load_model(run)
    config = card.training["config"]
    val_images, val_labels = validation_images(data, card, "validation")
    images, labels = (val_images, val_labels) if split == "validation" else \
        validation_images(data, card, split)
    # The shifted copies are the same for every epoch: made once.
    fit_sets = list(shifted_sets(val_images))
    score_sets = fit_sets if split == "validation" else list(shifted_sets(images))
    for weights in sorted((run / "epochs").glob("epoch*.safetensors"),
                          key=lambda p: int(p.stem[5:]))[-last:]:
        model.load_state_dict(load_file(str(weights)))
        fit_logits = {s.name: model_logits(model, card, x) for s, x in fit_sets}
        temperature, bias, threshold = fit_operating_point(
            val_labels, fit_logits, min_sensitivity=config["min_sensitivity"],
            plateau=config["threshold_plateau"])
        logits = fit_logits if split == "validation" else {
            s.name: model_logits(model, card, x) for s, x in score_sets}
        probabilities = {k: apply_temperature(v, temperature, bias) for k, v in logits.items()}
        print_table(f"{run.name} {weights.stem} on its {split} split",
                    score_suite(labels, probabilities, threshold), threshold, markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", type=Path,
                        help="model folders or .safetensors files (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"))
    parser.add_argument("--split", choices=("validation", "protocol", "edge"),
                        default="validation")
    parser.add_argument("--split-of", type=Path, default=None,
                        help="score every model on this model's split")
    parser.add_argument("--epochs", type=Path, help="score every saved epoch of this run")
    parser.add_argument("--last", type=int, default=3, help="with --epochs: how many of the "
                        "last epochs to score")
    parser.add_argument("--markdown", action="store_true", help="tables as Markdown")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: data folder not found (the shared training data)")
    torch.set_num_threads(args.threads)
    if args.epochs:
        score_epochs(args.epochs, args.data, args.split, args.markdown, args.last)
        return
    from pneumoscan.modelfile import default_model_path

    split_of = None if args.split_of is None else load_model(args.split_of)[1]
    for path in args.models or [default_model_path()]:
        score_model(path, args.data, args.split, args.markdown, split_of)


if __name__ == "__main__":
    main()
