"""``pneumoscan evaluate``: score a model on a labelled folder, honestly.

The threshold is the one in the model's ``model.json``; it is never re-tuned on the data
being evaluated. Unreadable images are skipped, counted and listed, not fatal. The network
runs on the Predictor's backends (ONNX Runtime without PyTorch, or PyTorch) and its logits
go through the Predictor's decision rule (:mod:`pneumoscan.decision`).
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
from pneumoscan.dataset import samples_for_evaluation
from pneumoscan.decision import CAUSE_THRESHOLD, Decisions, decide
from pneumoscan.image_cache import load_resized
from pneumoscan.inference import run_batches
from pneumoscan.metrics import compute_metrics
from pneumoscan.modelfile import read_card
from pneumoscan.plots import (
    plot_confusion,
    plot_precision_recall,
    plot_reliability,
    plot_roc,
    plot_score_histogram,
)
from pneumoscan.report import write_report

logger = logging.getLogger(__name__)

PLOTS = ("roc.png", "precision_recall.png", "confusion_matrix.png", "reliability.png",
         "score_histogram.png")


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
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Evaluate a model (default: the shipped one) on ``data``; write the results to ``out``.

    ``backend`` is the Predictor's: "auto", "onnx" (no PyTorch needed) or "torch". Returns
    the metrics written to ``metrics.json``.
    """
    out = Path(out)
    card = read_card(model_path)
    engine = create_backend(backend, model_path)
    samples = samples_for_evaluation(data)
    pixels, bad = load_resized(samples, card.preprocessing.image_size, use_cache=False,
                               progress=progress)
    skipped = [str(samples[i].path) for i in bad]
    kept = [s for i, s in enumerate(samples) if i not in set(bad)]
    if not kept:
        raise ValueError(f"{data}: none of the {len(samples)} images could be read")
    labels = np.array([s.label for s in kept])
    causes = np.array([-1 if s.cause is None else s.cause for s in kept])
    (logits,) = run_batches(lambda batch: engine.run(batch)[:1], pixels, card.preprocessing,
                            batch_size=batch_size)
    decisions = decide(logits, card)
    probability, predicted = decisions.probability, decisions.positive

    metrics = compute_metrics(labels, probability, card.threshold)
    metrics["model"] = card.version or card.arch
    metrics["backend"] = engine.name
    metrics["skipped"] = len(skipped)
    extra = cause_metrics(labels, causes, decisions)
    if extra:
        metrics.update(extra)

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
    with (out / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "probability", "predicted", "cause_probability"])
        for sample, p, hit, c in zip(kept, probability, predicted,
                                     decisions.cause_probability, strict=True):
            writer.writerow([str(sample.path), card.class_names[sample.label], f"{p:.6f}",
                             card.class_names[int(hit)], f"{c:.6f}"])
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
    write_report(out / "report.html", metrics, card, plots, data=str(data), skipped=skipped)
    logger.info("wrote metrics.json, predictions.csv, %d plots and report.html to %s",
                len(plots), out)
    return metrics


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: write it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
