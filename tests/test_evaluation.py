"""Evaluation of a model on a labelled folder: metrics.json, predictions, plots, report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_synthetic_dataset
from pneumoscan import DISCLAIMER
from pneumoscan.calibration import apply_temperature
from pneumoscan.config import TrainConfig
from pneumoscan.decision import Decisions
from pneumoscan.evaluation import PLOTS, cause_metrics, evaluate
from pneumoscan.imaging import load_image
from pneumoscan.metrics import compute_metrics
from pneumoscan.modelfile import load_model
from pneumoscan.preprocessing import preprocess
from pneumoscan.training import train

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
    assert list(rows[0]) == ["file", "label", "probability", "predicted", "cause_probability"]
    assert len(rows) == 48
    model, card = load_model(model_dir)
    for row in rows[::12]:
        x = torch.from_numpy(preprocess(load_image(row["file"]), card.preprocessing))[None]
        with torch.no_grad():
            logits = model(x)[0].numpy()
        assert float(row["probability"]) == pytest.approx(
            float(apply_temperature(logits[0], 1.5)), abs=2e-6)
        assert float(row["cause_probability"]) == pytest.approx(
            float(apply_temperature(logits[1], 0.8)), abs=2e-6)
        expected = "PNEUMONIA" if float(row["probability"]) >= 0.42 else "NORMAL"
        assert row["predicted"] == expected
        assert row["label"] == ("PNEUMONIA" if "/PNEUMONIA/" in row["file"] else "NORMAL")


def test_metrics_agree_with_the_predictions(evaluated: Path) -> None:
    rows = _predictions(evaluated)
    labels = np.array([row["label"] == "PNEUMONIA" for row in rows], dtype=int)
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
    assert [r["predicted"] for r in onnx_rows] == [r["predicted"] for r in torch_rows]
    np.testing.assert_allclose([float(r["probability"]) for r in onnx_rows],
                               [float(r["probability"]) for r in torch_rows], atol=1e-5)


def test_nothing_readable_is_an_error(model_dir: Path, tmp_path: Path) -> None:
    for folder in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "IM-0001-0001.jpeg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(ValueError, match="none of the 2 images"):
        evaluate(tmp_path / "data", tmp_path / "out", model_path=model_dir)
