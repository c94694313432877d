"""ONNX Runtime backend: the exported network on the CPU, without PyTorch.

The ONNX file lives beside the weights it was exported from (see :func:`onnx_path_for`):
``FOLDER/model.onnx`` for a model folder, ``NAME.onnx`` for ``NAME.safetensors`` (so the
shipped model's is ``pneumoscan/weights/default.onnx``). ``pneumoscan export`` writes it,
with the SHA-256 of those weights in its metadata; the backend refuses an ONNX file whose
weights have since changed (a model retrained in place), instead of serving the old network.

Nothing is exported on the fly: when the file is missing the error says to run
``pneumoscan export``, and ``--backend auto`` uses PyTorch instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan.errors import ModelFileError
from pneumoscan.modelfile import read_card, resolve_model_paths, weights_digest

logger = logging.getLogger(__name__)

#: Names of the graph's input and outputs, fixed by ``pneumoscan export``.
INPUT_NAME = "image"  # (B, 1, S, S) float32, the output of preprocess()
OUTPUT_NAMES = ("logits", "features", "pooled")  # (B, 2), (B, C, h, w), (B, C)

#: Metadata key holding the SHA-256 of the safetensors file the graph was exported from.
WEIGHTS_DIGEST_KEY = "pneumoscan.weights_sha256"


def onnx_path_for(model_path: Path | str | None) -> Path:
    """Where the ONNX export of a model lives: its weights' path with the ``.onnx`` suffix.

    Args:
        model_path: a model folder, a ``.safetensors`` file, or None (the shipped model).

    Raises:
        ModelFileError: the model's weights or card are missing.
    """
    weights, _ = resolve_model_paths(model_path)
    return weights.with_suffix(".onnx")


def export_hint(model_path: Path | str | None) -> str:
    """The command that (re)writes the ONNX file of ``model_path``."""
    model_option = f" --model {model_path}" if model_path is not None else ""
    return f"pneumoscan export --format onnx{model_option}"


class OnnxBackend:
    """The model's ONNX export run by ONNX Runtime on the CPU (full graph optimisation)."""

    name = "onnx"

    def __init__(self, model_path: Path | str | None, *, onnx_path: Path | str | None = None,
                 threads: int | None = None) -> None:
        """Open the ONNX file of ``model_path`` (or ``onnx_path``, for a file elsewhere).

        Args:
            model_path: a model folder, a ``.safetensors`` file, or None (the shipped model).
            onnx_path: the ONNX file, when it does not lie beside the weights.
            threads: intra-op threads (default: every CPU this process may use).

        Raises:
            ModelFileError: the ONNX file is missing, unreadable, exported from other
                weights, or made for another input size than the model card's.
        """
        import onnxruntime as ort

        from pneumoscan.backends import default_threads

        weights_path, _ = resolve_model_paths(model_path)
        self.path = Path(onnx_path) if onnx_path is not None else onnx_path_for(model_path)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: no ONNX export of {weights_path}; create it "
                                 f"with `{export_hint(model_path)}` (needs PyTorch), or use "
                                 "--backend torch")
        self.threads = threads or default_threads()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one chain of layers
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; ORT's warnings are about fusions
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind types (Fail, InvalidGraph, ...)
            raise ModelFileError(f"{self.path}: ONNX Runtime cannot load it "
                                 f"({type(exc).__name__}); re-create it with "
                                 f"`{export_hint(model_path)}`") from exc
        self._check(model_path, weights_path)
        logger.debug("ONNX Runtime session on %s, %d threads", self.path, self.threads)

    def _check(self, model_path: Path | str | None, weights_path: Path) -> None:
        metadata: dict[str, Any] = self.session.get_modelmeta().custom_metadata_map
        expected = metadata.get(WEIGHTS_DIGEST_KEY)
        if expected is None or expected != weights_digest(weights_path):
            raise ModelFileError(f"{self.path} was not exported from the weights in "
                                 f"{weights_path} (they changed since, or it was made "
                                 f"elsewhere); re-create it with `{export_hint(model_path)}`")
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if [i.name for i in inputs] != [INPUT_NAME] or tuple(outputs) != OUTPUT_NAMES:
            raise ModelFileError(f"{self.path}: expected input {INPUT_NAME!r} and outputs "
                                 f"{OUTPUT_NAMES}, found {[i.name for i in inputs]} and "
                                 f"{outputs} (an export by an older pneumoscan?); re-create "
                                 f"it with `{export_hint(model_path)}`")
        size = read_card(model_path).preprocessing.image_size
        if list(inputs[0].shape[1:]) != [1, size, size]:
            raise ModelFileError(f"{self.path}: input shape {inputs[0].shape} does not take "
                                 f"the model card's (1, {size}, {size}) images; re-create it "
                                 f"with `{export_hint(model_path)}`")

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits ``(B, 2)``, the last feature map ``(B, C, h, w)`` and its spatial mean
        ``(B, C)`` of a float32 batch."""
        feed = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        logits, features, pooled = self.session.run(list(OUTPUT_NAMES), feed)
        return logits, features, pooled
