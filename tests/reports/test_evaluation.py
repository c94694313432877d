"""Evaluation of a model on a labelled folder: metrics.json, predictions, plots, report."""

from __future__ import annotations

import csv
import html
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_synthetic_dataset
from pneumoscan import DISCLAIMER
from pneumoscan.calibration import apply_temperature
from pneumoscan.dataset import Sample
from pneumoscan.decision import Decisions
from pneumoscan.fitting.config import TrainConfig
from pneumoscan.fitting.training import train
from pneumoscan.imaging import load_image
from pneumoscan.metrics import compute_metrics
from pneumoscan.modelfile import load_model
from pneumoscan.preprocessing import normalize, resize
from pneumoscan.reports.evaluation import PLOTS, cause_metrics, evaluate, misclassified
from pneumoscan.reports.report import MAX_MISCLASSIFIED, PLOT_CAPTIONS
from pneumoscan.training_files import ROLES

METRIC_KEYS = ("n", "n_positive", "n_negative", "threshold", "auc", "auc_ci95", "accuracy",
               "sensitivity", "specificity", "precision", "f1", "tp", "fp", "tn", "fn",
               "brier", "ece")
CAUSE_KEYS = ("cause_auc", "cause_auc_ci95", "cause_accuracy", "cause_n")
CORRUPT = "IM-0999-0001.jpeg"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def model_dir(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simple_cnn trained for 2 epochs (a random one scores every image alike), with a
    threshold and temperatures then set by hand, so the test can tell where they come from."""
    config = TrainConfig(arch="simple_cnn", pretrained=False, image_size=32, epochs=2,
                         batch_size=8, lr=3e-3, threads=1)
    folder = train(config, data, tmp_path_factory.mktemp("model") / "run",
                   cache_dir=tmp_path_factory.mktemp("cache"))
    card = json.loads((folder / "model.json").read_text())
    card.update(threshold=0.42, temperature=1.5, bias=0.0, cause_temperature=0.8,
                threshold_rule="set by hand for a test")
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def evaluated(data: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = shutil.copytree(data, tmp_path_factory.mktemp("eval_data") / "data")
    # a truncated JPEG among the normals: skipped, counted and listed, not fatal
    (data / "train" / "NORMAL" / CORRUPT).write_bytes(
        (data / "train" / "NORMAL" / "IM-0000-0001.jpeg").read_bytes()[:300])
    out = tmp_path_factory.mktemp("eval") / "out"
    evaluate(data, out, model_path=model_dir, batch_size=16)
    return out


def _predictions(out: Path) -> list[dict[str, str]]:
    with (out / "predictions.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_metrics_json_has_every_figure(evaluated: Path) -> None:
    metrics = json.loads((evaluated / "metrics.json").read_text())
    for key in METRIC_KEYS + CAUSE_KEYS:
        assert key in metrics, key
    assert (metrics["n"], metrics["n_positive"], metrics["n_negative"]) == (48, 24, 24)
    assert metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"] == 48
    assert metrics["threshold"] == 0.42  # the model's, never re-tuned on this data
    assert metrics["cause_n"] == 24  # every synthetic pneumonia name carries its cause
    assert metrics["skipped"] == 1
    assert metrics["model"].startswith("simple_cnn-32px-")
    assert len(metrics["auc_ci95"]) == 2


def test_skipped_image_is_listed(evaluated: Path) -> None:
    listed = (evaluated / "skipped.txt").read_text().splitlines()
    assert len(listed) == 1 and listed[0].endswith(CORRUPT)
    assert all(not row["file"].endswith(CORRUPT) for row in _predictions(evaluated))


def test_predictions_match_an_independent_forward_pass(evaluated: Path,
                                                       model_dir: Path) -> None:
    rows = _predictions(evaluated)
    assert list(rows[0]) == ["file", "true_label", "predicted_label", "probability",
                             "cause_probability", "overlap"]
    assert len(rows) == 48
    model, card = load_model(model_dir)
    for row in rows[::12]:
        pixels = resize(load_image(row["file"]), card.preprocessing.image_size)
        x = torch.from_numpy(normalize(pixels, card.preprocessing))[None]
        with torch.no_grad():
            logits = model(x)[0].numpy()
        assert float(row["probability"]) == pytest.approx(
            float(apply_temperature(logits[0], 1.5)), abs=2e-6)
        assert float(row["cause_probability"]) == pytest.approx(
            float(apply_temperature(logits[1], 0.8)), abs=2e-6)
        expected = "PNEUMONIA" if float(row["probability"]) >= 0.42 else "NORMAL"
        assert row["predicted_label"] == expected
        assert row["true_label"] == ("PNEUMONIA" if "/PNEUMONIA/" in row["file"] else "NORMAL")


def test_metrics_agree_with_the_predictions(evaluated: Path) -> None:
    rows = _predictions(evaluated)
    labels = np.array([row["true_label"] == "PNEUMONIA" for row in rows], dtype=int)
    probabilities = np.array([float(row["probability"]) for row in rows])
    recomputed = compute_metrics(labels, probabilities, 0.42, n_boot=10)
    written = json.loads((evaluated / "metrics.json").read_text())
    for key in ("tp", "fp", "tn", "fn"):
        assert written[key] == recomputed[key], key
    for key in ("accuracy", "auc", "brier", "ece"):
        assert written[key] == pytest.approx(recomputed[key], abs=1e-5), key


def test_five_plots_and_a_self_contained_report(evaluated: Path) -> None:
    assert len(PLOTS) == 5
    for name in PLOTS:
        assert (evaluated / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (evaluated / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 5
    assert DISCLAIMER in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    assert "<link" not in page and "<script" not in page
    assert "1 unreadable image(s) were skipped" in page
    assert "set by hand for a test" in page
    for link in ('href="predictions.csv"', 'href="metrics.json"', 'href="skipped.txt"'):
        assert link in page, link
    for name, caption in PLOT_CAPTIONS.items():  # every plot says what it shows
        assert html.escape(caption) in page, name


def test_misclassified_images_in_the_report_worst_first(evaluated: Path) -> None:
    metrics = json.loads((evaluated / "metrics.json").read_text())
    page = (evaluated / "report.html").read_text()
    errors = metrics["fp"] + metrics["fn"]
    assert f"Misclassified images ({errors})" in page
    assert page.count('src="data:image/jpeg;base64,') == min(errors, MAX_MISCLASSIFIED)


def test_the_models_own_images_are_counted_and_warned_about(evaluated: Path) -> None:
    """The evaluated folder is a copy of the data the model was trained on: every image is
    one the model has seen, found by content (the copy has other paths)."""
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["split"] == "train"
    overlap = metrics["overlap"]
    assert sum(overlap.values()) == 48 and overlap["training"] > 0 and overlap["validation"] > 0
    rows = _predictions(evaluated)
    assert sum(row["overlap"] == "training" for row in rows) == overlap["training"]
    assert all(row["overlap"] in ROLES for row in rows)
    page = (evaluated / "report.html").read_text()
    assert f"{overlap['training']} of the 48 evaluated images are images this model was " \
           "trained on" in page
    assert 'class="overlap"' in page


def test_misclassified_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    probability = np.array([0.9, 0.2, 0.3, 0.05, 0.8])  # threshold 0.5: errors 0, 2, 3
    decisions = Decisions(probability=probability, cause_probability=np.zeros(5),
                          positive=probability >= 0.5, bacterial=np.zeros(5, bool))
    samples = [Sample(Path(f"{i}.png"), int(label), str(i)) for i, label in enumerate(labels)]
    errors = misclassified(samples, np.zeros((5, 8, 8), np.uint8), labels, decisions,
                           ["NORMAL", "PNEUMONIA"], ["", "", "training", "", ""])
    # the wrong answer's probability: 0.95 (3, missed), 0.9 (0, false alarm), 0.7 (2)
    assert [e.file for e in errors] == ["3.png", "0.png", "2.png"]
    assert [(e.true_label, e.predicted_label) for e in errors] == [
        ("PNEUMONIA", "NORMAL"), ("NORMAL", "PNEUMONIA"), ("PNEUMONIA", "NORMAL")]
    assert errors[2].overlap == "training"
    assert all(e.thumbnail[:2] == b"\xff\xd8" for e in errors)  # JPEG


def test_cause_metrics_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1, 1])
    causes = np.array([-1, -1, 1, 1, 0, 0, -1])  # the last pneumonia has no known cause
    cause_p = np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.6, 0.7])
    predicted = np.array([False, True, True, True, True, False, True])
    decisions = Decisions(probability=np.zeros(7), cause_probability=cause_p,
                          positive=predicted, bacterial=cause_p >= 0.5)
    out = cause_metrics(labels, causes, decisions)
    assert out is not None
    assert out["cause_n"] == 4
    assert out["cause_accuracy"] == pytest.approx(2 / 4)  # 0.8 -> bact ok, 0.3 no, 0.2 ok, 0.6 no
    assert out["cause_auc"] == pytest.approx(3 / 4)  # (0.8, 0.3) x (0.2, 0.6): 3 of 4 pairs
    # rows: true normal / bacterial / viral; columns: predicted normal / bacterial / viral
    # (the normal predicted as pneumonia gets the cause its cause probability 0.1 says)
    assert out["cause_confusion"]["matrix"] == [[1, 0, 1],
                                                [0, 1, 1],
                                                [1, 0, 1]]
    assert cause_metrics(labels, np.full(7, -1), decisions) is None


def test_onnx_backend_gives_the_torch_backends_figures(exported_tiny_model: Path, data: Path,
                                                      tmp_path: Path) -> None:
    """evaluate runs without PyTorch on the ONNX export, with the same results."""
    by_torch = evaluate(data, tmp_path / "torch", model_path=exported_tiny_model,
                        backend="torch")
    by_onnx = evaluate(data, tmp_path / "onnx", model_path=exported_tiny_model,
                       backend="onnx")
    assert (by_torch["backend"], by_onnx["backend"]) == ("torch", "onnx")
    for key in ("n", "tp", "fp", "tn", "fn", "cause_n"):
        assert by_onnx[key] == by_torch[key], key
    for key in ("auc", "brier", "cause_auc"):
        assert by_onnx[key] == pytest.approx(by_torch[key], abs=1e-5), key
    torch_rows, onnx_rows = _predictions(tmp_path / "torch"), _predictions(tmp_path / "onnx")
    assert [r["predicted_label"] for r in onnx_rows] == \
        [r["predicted_label"] for r in torch_rows]
    np.testing.assert_allclose([float(r["probability"]) for r in onnx_rows],
                               [float(r["probability"]) for r in torch_rows], atol=1e-5)


def test_nothing_readable_is_an_error(model_dir: Path, tmp_path: Path) -> None:
    for folder in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "IM-0001-0001.jpeg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(ValueError, match="none of the 2 images"):
        evaluate(tmp_path / "data", tmp_path / "out", model_path=model_dir)


def test_a_model_without_a_record_of_its_files_says_so(exported_tiny_model: Path, data: Path,
                                                      tmp_path: Path) -> None:
    metrics = evaluate(data, tmp_path / "out", model_path=exported_tiny_model)
    assert metrics["overlap"] is None
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["overlap"] is None
    assert {row["overlap"] for row in _predictions(tmp_path / "out")} == {""}
    assert "could not be checked" in (tmp_path / "out" / "report.html").read_text()


def test_progress_hears_both_phases_with_their_totals(exported_tiny_model: Path, data: Path,
                                                     tmp_path: Path) -> None:
    heard: list[tuple[str, int]] = []
    evaluate(data, tmp_path / "out", model_path=exported_tiny_model, batch_size=16,
             progress=lambda kind, n: heard.append((kind, n)))
    starts = [(i, n) for i, (kind, n) in enumerate(heard) if kind == "start"]
    assert [n for _, n in starts] == [48, 48]
    reading = heard[starts[0][0] + 1:starts[1][0]]
    predicting = heard[starts[1][0] + 1:]
    assert sum(n for _, n in reading) == 48 and sum(n for _, n in predicting) == 48
