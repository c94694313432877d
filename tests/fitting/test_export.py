"""ONNX export: a checked graph beside the model, a dynamic batch axis, both outputs, and
numeric parity with PyTorch on real X-rays (the shipped model on its validation split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx
import onnxruntime as ort

from pneumoscan.fitting import export as export_module
from pneumoscan.fitting.export import (
    LOGIT_TOLERANCE,
    OnnxParityError,
    compare_with_torch,
    export_onnx,
    sample_images,
)
from pneumoscan.modelfile import resolve_model
from pneumoscan.onnx_backend import WEIGHTS_DIGEST_KEY


@pytest.fixture
def exported(exported_tiny_model: Path) -> Path:
    return exported_tiny_model


def test_export_writes_a_checked_graph_beside_the_weights(exported: Path) -> None:
    path = exported / "model.onnx"
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    metadata = {p.key: p.value for p in graph.metadata_props}
    assert metadata[WEIGHTS_DIGEST_KEY] == resolve_model(exported).weights_sha256
    assert metadata["pneumoscan.arch"] == "simple_cnn"
    assert metadata["pneumoscan.image_size"] == "64"
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == ["logits", "evidence", "pooled"]
    assert not [p for p in exported.iterdir() if p.name.endswith(".tmp.onnx")]


@pytest.mark.parametrize("batch", [1, 3, 32])
def test_export_has_a_dynamic_batch_axis_and_every_output(exported: Path,
                                                             batch: int) -> None:
    session = ort.InferenceSession(str(exported / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 1, 64, 64]
    x = np.random.default_rng(batch).standard_normal((batch, 1, 64, 64), np.float32)
    logits, evidence, pooled = session.run(None, {"image": x})
    assert logits.shape == (batch, 2)
    assert evidence.shape == (batch, 2, 2)  # simple_cnn: stride 32
    assert pooled.shape == (batch, 256)
    # The head is average pooling + linear, so the logits follow from the pooled features
    # alone, and the pneumonia logit is the bias plus the mean of the evidence.
    from safetensors.numpy import load_file

    weights = load_file(str(exported / "model.safetensors"))
    expected = pooled @ weights["head.weight"].T + weights["head.bias"]
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    np.testing.assert_allclose(evidence.mean(axis=(1, 2)) + weights["head.bias"][0],
                               logits[:, 0], atol=1e-5)


def test_parity_with_torch_on_real_images(exported: Path, shared_normal_images: list[Path],
                                          shared_pneumonia_images: list[Path]) -> None:
    images = shared_normal_images + shared_pneumonia_images
    report = compare_with_torch(exported, exported / "model.onnx", images)
    assert report.source == "X-ray"
    assert report.n_images == len(images) == 8
    assert report.max_abs_diff_logits <= LOGIT_TOLERANCE
    assert report.max_rel_diff_features <= 1e-4
    assert report.same_labels == 8
    assert report.passed


def test_export_checks_real_images_and_writes_elsewhere(
        tiny_model_dir: Path, tmp_path: Path, shared_normal_images: list[Path]) -> None:
    out = tmp_path / "elsewhere" / "tiny.onnx"
    path, report = export_onnx(tiny_model_dir, out, check_images=shared_normal_images)
    assert path == out and out.is_file()
    assert report.source == "X-ray" and report.n_images == 4 and report.passed
    assert not (tiny_model_dir / "model.onnx").exists()


def test_export_refuses_a_graph_that_differs(tiny_model_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A negative tolerance cannot be met: the export must fail and leave no file behind
    # (neither the target nor its temporary).
    monkeypatch.setattr(export_module, "LOGIT_TOLERANCE", -1.0)
    with pytest.raises(OnnxParityError, match="differs from PyTorch"):
        export_onnx(tiny_model_dir, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_sample_images_spreads_over_the_listing(tmp_path: Path) -> None:
    for folder in ("NORMAL", "PNEUMONIA"):
        (tmp_path / folder).mkdir()
        for i in range(5):
            (tmp_path / folder / f"{i}.jpeg").write_bytes(b"x")
    (tmp_path / "NORMAL" / "notes.txt").write_text("not an image")
    found = sample_images(tmp_path, 4)
    assert [p.parent.name for p in found] == ["NORMAL", "NORMAL", "PNEUMONIA", "PNEUMONIA"]
    assert [p.name for p in found] == ["0.jpeg", "3.jpeg", "1.jpeg", "4.jpeg"]
    assert len(sample_images(tmp_path, 100)) == 10
    with pytest.raises(FileNotFoundError, match="no such folder"):
        sample_images(tmp_path / "missing", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no"):
        sample_images(tmp_path / "empty", 4)


def test_export_command(tiny_model_dir: Path, tmp_path: Path,
                        shared_normal_images: list[Path]) -> None:
    from typer.testing import CliRunner

    from pneumoscan.cli.main import app

    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(app, ["export", "--format", "onnx", "--model",
                                      str(tiny_model_dir), "--out", str(out), "--check-data",
                                      str(shared_normal_images[0].parent), "--check-images",
                                      "4"])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "4 X-ray inputs" in result.output
    refused = CliRunner().invoke(app, ["export", "--format", "tflite", "--model",
                                       str(tiny_model_dir), "--out", str(out)])
    assert refused.exit_code == 2
    assert "only 'onnx'" in refused.output


@pytest.mark.slow
def test_shipped_onnx_matches_torch_on_every_validation_image(shipped_model: Path,
                                                             chest_xray_dir: Path) -> None:
    """The shipped ``default.onnx``: max |logit diff| <= 1e-4 and the same label as PyTorch
    on every image of the shipped model's patient-level validation split."""
    from pneumoscan.dataset import discover, split_for_training

    config = resolve_model(shipped_model).card.training.get("config", {})
    pool = discover(chest_xray_dir).splits["train"]
    validation = split_for_training(pool, config.get("val_fraction", 0.15),
                                    config.get("seed", 0),
                                    config.get("protocol_fraction", 0.0)).validation
    report = compare_with_torch(shipped_model, shipped_model.with_suffix(".onnx"),
                                [s.path for s in validation])
    assert report.n_images == len(validation) > 500
    assert report.max_abs_diff_logits <= LOGIT_TOLERANCE, report.describe()
    assert report.same_labels == report.n_images, report.describe()
