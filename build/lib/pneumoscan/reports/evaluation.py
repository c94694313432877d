"""``pneumoscan evaluate``: score a model on a labelled folder, honestly.

The threshold is the one in the model's ``model.json``; it is never re-tuned on the data
being evaluated. Images that are the model's own training or validation files (found by
their content, :mod:`pneumoscan.training_files`) are counted and warned about. Unreadable
images are skipped, counted and listed, not fatal. The network runs on the Predictor's
backends (ONNX Runtime without PyTorch, or PyTorch) and its logits go through the
Predictor's decision rule (:mod:`pneumoscan.decision`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from pneumoscan.backends import create_backend
from pneumoscan.dataset import Sample, describe, evaluation_split
from pneumoscan.decision import CAUSE_THRESHOLD, Decisions, decide
from pneumoscan.image_cache import load_resized
from pneumoscan.inference import run_batches
from pneumoscan.metrics import compute_metrics
from pneumoscan.modelfile import read_card
from pneumoscan.reports.embedded_images import thumbnail_jpeg
from pneumoscan.reports.plots import (
    plot_confusion,
    plot_precision_recall,
    plot_reliability,
    plot_roc,
    plot_score_histogram,
)
from pneumoscan.reports.report import MAX_MISCLASSIFIED, Misclassified, write_report
from pneumoscan.training_files import (
    count_overlap,
    find_overlap,
    load_training_files,
    overlap_warnings,
)

logger = logging.getLogger(__name__)

PLOTS = ("roc.png", "precision_recall.png", "confusion_matrix.png", "reliability.png",
         "score_histogram.png")
#: Columns of ``predictions.csv``; ``predict``'s rows say ``label`` for its one label.
PREDICTION_COLUMNS = ("file", "true_label", "predicted_label", "probability",
                      "cause_probability", "overlap")
#: ``progress(kind, amount)``: ``("start", total)`` when a phase begins, ``("advance", n)``.
ProgressCallback = Callable[[str, int], None]


def cause_metrics(labels: np.ndarray, causes: np.ndarray,
                  decisions: Decisions) -> dict[str, Any] | None:
    """Bacterial-vs-viral figures on pneumonia images whose cause is known.

    Returns ``cause_auc, cause_auc_ci95, cause_accuracy, cause_n`` and the 3-class
    (normal / bacterial / viral) confusion matrix, or None when no cause is known.
    """
    known = (labels == 1) & (causes >= 0)
    if not known.any():
        return None
    scores = compute_metrics(causes[known], decisions.cause_probability[known],
                             CAUSE_THRESHOLD)
    # 3 classes: 0 normal, 1 bacterial, 2 viral; a predicted cause only where pneumonia.
    truth = np.where(labels == 0, 0, np.where(causes == 1, 1, 2))
    guess = np.where(~decisions.positive, 0, np.where(decisions.bacterial, 1, 2))
    rows = (labels == 0) | known
    matrix = confusion_matrix(truth[rows], guess[rows], labels=[0, 1, 2])
    return {"cause_auc": scores["auc"], "cause_auc_ci95": scores["auc_ci95"],
            "cause_accuracy": scores["accuracy"], "cause_n": scores["n"],
            "cause_confusion": {"labels": ["normal", "bacterial", "viral"],
                                "matrix": matrix.tolist()}}


def evaluate(data: Path | str, out: Path | str, *, model_path: Path | str | None = None,
             backend: str = "auto", batch_size: int = 64,
             progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Evaluate a model (default: the shipped one) on ``data``; write the results to ``out``.

    ``backend`` is the Predictor's: "auto", "onnx" (no PyTorch needed) or "torch".
    ``progress(kind, amount)`` hears ``("start", total)`` as reading the images and then
    predicting them begin, and ``("advance", n)`` as they go. Evaluated images that are the
    model's own training or validation files are counted in ``metrics["overlap"]`` (None
    when the model keeps no record of its files) and logged as warnings. Returns the
    metrics written to ``metrics.json``.
    """
    out = Path(out)
    card = read_card(model_path)
    engine = create_backend(backend, model_path)
    split, samples = evaluation_split(data)
    logger.info("evaluating the %s split of %s: %s", split, data, describe(samples))
    if progress is not None:
        progress("start", len(samples))
    pixels, bad = load_resized(samples, card.preprocessing.image_size, use_cache=False,
                               progress=_advance(progress))
    skipped = [str(samples[i].path) for i in bad]
    kept = [s for i, s in enumerate(samples) if i not in set(bad)]
    if not kept:
        raise ValueError(f"{data}: none of the {len(samples)} images could be read")
    labels = np.array([s.label for s in kept])
    causes = np.array([-1 if s.cause is None else s.cause for s in kept])
    if progress is not None:
        progress("start", len(kept))
    (logits,) = run_batches(lambda batch: engine.run(batch)[:1], pixels, card.preprocessing,
                            batch_size=batch_size, progress=_advance(progress))
    decisions = decide(logits, card)
    probability, predicted = decisions.probability, decisions.positive
    seen = _seen_by_model(model_path, kept)

    metrics = compute_metrics(labels, probability, card.threshold)
    metrics["model"] = card.version or card.arch
    metrics["backend"] = engine.name
    metrics["data"] = str(data)
    metrics["split"] = split
    metrics["skipped"] = len(skipped)
    metrics["overlap"] = None if seen is None else count_overlap(seen)
    warnings = [] if seen is None else overlap_warnings(metrics["overlap"], len(kept))
    for warning in warnings:
        logger.warning("%s", warning)
    extra = cause_metrics(labels, causes, decisions)
    if extra:
        metrics.update(extra)

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
    _write_predictions(out / "predictions.csv", kept, card.class_names, decisions,
                       seen or [""] * len(kept))
    if skipped:
        (out / "skipped.txt").write_text("\n".join(skipped) + "\n")
    plots = [
        plot_roc(labels, probability, card.threshold, out / PLOTS[0]),
        plot_precision_recall(labels, probability, out / PLOTS[1]),
        plot_confusion(labels, predicted.astype(int), card.class_names, out / PLOTS[2]),
        plot_reliability(labels, probability, out / PLOTS[3]),
        plot_score_histogram(labels, probability, card.threshold, card.class_names,
                             out / PLOTS[4]),
    ]
    errors = misclassified(kept, pixels, labels, decisions, card.class_names,
                           seen or [""] * len(kept))
    write_report(out / "report.html", metrics, card, plots, data=str(data), split=split,
                 skipped=skipped, misclassified=errors, warnings=warnings)
    logger.info("wrote metrics.json, predictions.csv, %d plots and report.html to %s",
                len(plots), out)
    return metrics


def _advance(progress: ProgressCallback | None) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda n: progress("advance", n)


def _seen_by_model(model_path: Path | str | None, samples: list[Sample]) -> list[str] | None:
    """For each sample, the side of the model's own split holding the same file ("" for
    none), or None when the model keeps no record of its files."""
    record = load_training_files(model_path)
    if record is None:
        logger.warning("the model keeps no record of the files it was trained on: overlap "
                       "of the evaluated images with its training data cannot be checked")
        return None
    return find_overlap(record, [s.path for s in samples])


def _write_predictions(path: Path, samples: list[Sample], class_names: list[str],
                       decisions: Decisions, seen: list[str]) -> None:
    """``predictions.csv``: one row per image, named so that the true and the predicted
    label cannot be confused; ``overlap`` names the side of the model's own split a file
    is on (training, validation, protocol), empty for an image it has never seen."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        for sample, p, hit, c, role in zip(samples, decisions.probability, decisions.positive,
                                           decisions.cause_probability, seen, strict=True):
            writer.writerow([str(sample.path), class_names[sample.label],
                             class_names[int(hit)], f"{p:.6f}", f"{c:.6f}", role])


def misclassified(samples: list[Sample], pixels: np.ndarray, labels: np.ndarray,
                  decisions: Decisions, class_names: list[str],
                  seen: list[str]) -> list[Misclassified]:
    """The images on the wrong side of the threshold, worst first: ordered by the
    probability given to the wrong answer (P(pneumonia) of a false positive, 1 - it of a
    false negative). Thumbnails of the first :data:`MAX_MISCLASSIFIED` only."""
    wrong = np.flatnonzero(decisions.positive != labels.astype(bool))
    confidence = np.where(decisions.positive, decisions.probability,
                          1.0 - decisions.probability)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")]
    return [Misclassified(file=str(samples[i].path), true_label=class_names[labels[i]],
                          predicted_label=class_names[int(decisions.positive[i])],
                          probability=float(decisions.probability[i]),
                          thumbnail=thumbnail_jpeg(pixels[i]) if rank < MAX_MISCLASSIFIED
                          else b"", overlap=seen[i])
            for rank, i in enumerate(order)]


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: write it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
