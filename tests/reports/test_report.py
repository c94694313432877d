"""report.html on its own: warnings first, captions, links, the misclassified table."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.modelcard import ModelCard
from pneumoscan.preprocessing import PreprocessConfig
from pneumoscan.reports.embedded_images import thumbnail_jpeg
from pneumoscan.reports.plots import plot_roc
from pneumoscan.reports.report import MAX_MISCLASSIFIED, PLOT_CAPTIONS, Misclassified, write_report

METRICS = {"n": 4, "n_positive": 2, "n_negative": 2, "threshold": 0.5, "auc": 0.75,
           "auc_ci95": [0.5, 1.0], "accuracy": 0.5, "sensitivity": 0.5, "specificity": 0.5,
           "precision": 0.5, "f1": 0.5, "tp": 1, "fp": 1, "tn": 1, "fn": 1, "brier": 0.25,
           "ece": 0.1}


@pytest.fixture
def card() -> ModelCard:
    return ModelCard(arch="simple_cnn", preprocessing=PreprocessConfig(image_size=32),
                     version="v1", threshold_rule="by hand")


def _error(name: str, overlap: str = "") -> Misclassified:
    return Misclassified(file=name, true_label="NORMAL", predicted_label="PNEUMONIA",
                         probability=0.9, thumbnail=thumbnail_jpeg(np.zeros((8, 8), np.uint8)),
                         overlap=overlap)


def test_warnings_come_first_and_files_are_linked(tmp_path: Path, card: ModelCard) -> None:
    roc = plot_roc(np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.6, 0.4]), 0.5,
                   tmp_path / "roc.png")
    warning = "3 of the 4 evaluated images are images this model was trained on"
    page = write_report(tmp_path / "report.html", {**METRICS, "overlap": {"training": 3}},
                        card, [roc], data="data/<x>", split="test", skipped=[],
                        misclassified=[_error("a<b>.png", "training")],
                        warnings=[warning]).read_text()
    assert page.index(warning) < page.index("<h2>Metrics")
    assert "the <strong>test</strong> split of <code>data/&lt;x&gt;</code>" in page
    assert html.escape(PLOT_CAPTIONS["roc.png"]) in page and 'href="roc.png"' in page
    assert 'href="predictions.csv"' in page and 'href="metrics.json"' in page
    assert "a&lt;b&gt;.png" in page and "in the model's training data" in page
    assert "could not be checked" not in page


def test_no_record_is_said_and_long_error_lists_are_cut(tmp_path: Path,
                                                        card: ModelCard) -> None:
    errors = [_error(f"{i}.png") for i in range(MAX_MISCLASSIFIED + 5)]
    page = write_report(tmp_path / "report.html", {**METRICS, "overlap": None}, card, [],
                        data="d", skipped=["d/bad.png"], misclassified=errors).read_text()
    assert "could not be checked" in page and 'href="skipped.txt"' in page
    assert page.count('src="data:image/jpeg;base64,') == MAX_MISCLASSIFIED
    assert f"Misclassified images ({MAX_MISCLASSIFIED + 5})" in page
    assert f"The {MAX_MISCLASSIFIED} worst of {MAX_MISCLASSIFIED + 5} are shown" in page
