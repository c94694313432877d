"""The ONNX Runtime backend: found beside the model, refused when stale, the same
predictions as PyTorch through the Predictor, picked by ``auto``, and no PyTorch needed."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from pneumoscan.backends import (
    TorchBackend,
    available_backends,
    create_backend,
    default_threads,
)
from pneumoscan.errors import ModelFileError
from pneumoscan.onnx_backend import OnnxBackend, onnx_path_for
from pneumoscan.predictor import Predictor


@pytest.fixture
def exported(exported_tiny_model: Path) -> Path:
    return exported_tiny_model


@pytest.fixture
def unexported(tiny_model_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_onnx_path_sits_beside_the_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert onnx_path_for(tiny_model_dir) == tiny_model_dir / "model.onnx"
    shutil.copy(tiny_model_dir / "model.safetensors", tmp_path / "default.safetensors")
    shutil.copy(tiny_model_dir / "model.json", tmp_path / "default.json")
    assert onnx_path_for(tmp_path / "default.safetensors") == tmp_path / "default.onnx"
    with pytest.raises(ModelFileError, match="not found"):
        onnx_path_for(tmp_path / "missing")


def test_missing_export_says_how_to_make_it(unexported: Path) -> None:
    with pytest.raises(ModelFileError, match=r"pneumoscan export --format onnx --model"):
        OnnxBackend(unexported)


def test_stale_export_is_refused(exported: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "retrained"
    shutil.copytree(exported, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["head.bias"] = state["head.bias"] + torch.tensor([1.0, 0.0])  # "retrained" in place
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelFileError, match="not exported from the weights"):
        OnnxBackend(folder)


def test_export_for_another_input_size_is_refused(exported: Path, tmp_path: Path) -> None:
    folder = tmp_path / "resized"
    shutil.copytree(exported, folder)
    card = json.loads((folder / "model.json").read_text())
    card["preprocessing"]["image_size"] = 96
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=r"does not take the model card's \(1, 96, 96\)"):
        OnnxBackend(folder)


def test_export_by_an_older_pneumoscan_is_refused(exported: Path, tmp_path: Path) -> None:
    """A graph without the ``pooled`` output (exports before it): re-export, not a crash."""
    import onnx

    folder = tmp_path / "old"
    shutil.copytree(exported, folder)
    graph = onnx.load(str(folder / "model.onnx"))
    del graph.graph.output[2]
    onnx.save(graph, str(folder / "model.onnx"))
    with pytest.raises(ModelFileError, match="an export by an older pneumoscan"):
        OnnxBackend(folder)


def test_corrupt_export_is_refused(exported: Path, tmp_path: Path) -> None:
    folder = tmp_path / "corrupt"
    shutil.copytree(exported, folder)
    (folder / "model.onnx").write_bytes(b"not a protobuf" * 10)
    with pytest.raises(ModelFileError, match="ONNX Runtime cannot load it"):
        OnnxBackend(folder)


def test_backend_runs_any_batch_size_like_torch(exported: Path) -> None:
    onnx_backend, torch_backend = OnnxBackend(exported, threads=1), TorchBackend(exported)
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 64, 64), np.float32)
        logits, evidence, pooled = onnx_backend.run(x)
        expected_logits, expected_evidence, expected_pooled = torch_backend.run(x)
        assert logits.dtype == evidence.dtype == pooled.dtype == np.float32
        assert evidence.shape == expected_evidence.shape == (batch, 2, 2)
        assert pooled.shape == expected_pooled.shape == (batch, 256)
        np.testing.assert_allclose(logits, expected_logits, atol=1e-4)
        np.testing.assert_allclose(evidence, expected_evidence, atol=1e-4)
        np.testing.assert_allclose(pooled, expected_pooled, atol=1e-4)


def test_predictor_gives_the_same_results_on_both_backends(
        exported: Path, shared_normal_images: list[Path],
        shared_pneumonia_images: list[Path]) -> None:
    on_onnx = Predictor.load(exported, backend="onnx")
    on_torch = Predictor.load(exported, backend="torch")
    assert (on_onnx.backend.name, on_torch.backend.name) == ("onnx", "torch")
    for path in shared_normal_images + shared_pneumonia_images:
        a, b = on_onnx.predict(path), on_torch.predict(path)
        assert (a.label, a.cause, a.in_scope) == (b.label, b.cause, b.in_scope)
        assert a.probability == pytest.approx(b.probability, abs=1e-5)
        assert a.heatmap is not None and b.heatmap is not None
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-3)


def test_auto_picks_onnx_only_when_the_export_exists(exported: Path, unexported: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    assert available_backends()[:2] == ["onnx", "torch"]
    assert create_backend("auto", exported).name == "onnx"
    with caplog.at_level(logging.INFO, logger="pneumoscan.backends"):
        assert create_backend("auto", unexported).name == "torch"
    assert "pneumoscan export" in caplog.text
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        create_backend("tpu", exported)


def test_auto_falls_back_to_torch_on_a_stale_export(exported: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "stale"
    shutil.copytree(exported, folder)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1  # flip one bit of the last weight
    (folder / "model.safetensors").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="pneumoscan.backends"):
        assert create_backend("auto", folder).name == "torch"
    assert "not exported from the weights" in caplog.text


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_threads_default_to_the_cpus_this_process_may_use(exported: Path) -> None:
    """One CPU allowed (a container's share, taskset): one thread, not the machine's count."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        assert default_threads() == 1
        backend = OnnxBackend(exported)
    finally:
        os.sched_setaffinity(0, allowed)
    assert backend.threads == 1
    assert backend.session.get_session_options().intra_op_num_threads == 1
    assert default_threads() == len(allowed)


_WITHOUT_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):  # as if torch were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
from pneumoscan import Predictor
from pneumoscan.backends import available_backends
assert available_backends() == ["onnx"], available_backends()
predictor = Predictor.load(sys.argv[1], backend="auto")
result = predictor.predict(sys.argv[2])
assert predictor.backend.name == "onnx", predictor.backend.name
assert result.heatmap is not None and result.heatmap.shape == (2, 2)  # simple_cnn, 64 px: stride 32
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "onnx")]
print(result.label, round(result.probability, 6))
"""


def test_predictor_on_onnx_runs_without_torch(exported: Path,
                                              shared_normal_images: list[Path]) -> None:
    """``auto`` with torch unimportable: ONNX Runtime alone, heat map included."""
    image = shared_normal_images[0]
    run = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(exported), str(image)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    label, probability = run.stdout.split()
    expected = Predictor.load(exported, backend="torch").predict(image)
    assert label == expected.label
    assert float(probability) == pytest.approx(expected.probability, abs=1e-5)
