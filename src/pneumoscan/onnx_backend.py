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

from pneumoscan.backends import Outputs, run_in_passes
from pneumoscan.errors import ModelFileError
from pneumoscan.modelfile import ModelFiles, ModelLike, resolve_model

logger = logging.getLogger(__name__)

#: Names of the graph's input and outputs, fixed by ``pneumoscan export``.
INPUT_NAME = "image"  # (B, 1, S, S) float32, the output of normalize()
OUTPUT_NAMES = ("logits", "evidence", "pooled")  # (B, 2), (B, h, w), (B, C)

#: Metadata key holding the SHA-256 of the safetensors file the graph was exported from.
WEIGHTS_DIGEST_KEY = "pneumoscan.weights_sha256"


def onnx_path_for(model: ModelLike) -> Path:
    """Where the ONNX export of a model lives: its weights' path with the ``.onnx`` suffix.

    Args:
        model: a model folder, a ``.safetensors`` file, None (the shipped model), or one
            already resolved.

    Raises:
        ModelFileError: the model's weights or card are missing.
    """
    return resolve_model(model).beside(".onnx")


def export_hint(model: ModelLike) -> str:
    """The command that (re)writes the ONNX file of ``model``."""
    source = model.source if isinstance(model, ModelFiles) else model
    model_option = f" --model {source}" if source is not None else ""
    return f"pneumoscan export --format onnx{model_option}"


class OnnxBackend:
    """The model's ONNX export run by ONNX Runtime on the CPU (full graph optimisation)."""

    name = "onnx"

    def __init__(self, model: ModelLike, *, onnx_path: Path | str | None = None,
                 threads: int | None = None) -> None:
        """Open the ONNX file of ``model`` (or ``onnx_path``, for a file elsewhere).

        Args:
            model: a model folder, a ``.safetensors`` file, None (the shipped model), or
                one already resolved.
            onnx_path: the ONNX file, when it does not lie beside the weights.
            threads: intra-op threads (default: every CPU this process may use).

        Raises:
            ModelFileError: the ONNX file is missing, unreadable, exported from other
                weights, or made for another input size than the model card's.
        """
        import onnxruntime as ort

        from pneumoscan.backends import default_threads

        files = resolve_model(model)
        self.path = Path(onnx_path) if onnx_path is not None else onnx_path_for(files)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: no ONNX export of {files.weights}; create it "
                                 f"with `{export_hint(files)}` (needs PyTorch), or use "
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
                                 f"`{export_hint(files)}`") from exc
        self._check(files)
        logger.debug("ONNX Runtime session on %s, %d threads", self.path, self.threads)

    def _check(self, files: ModelFiles) -> None:
        metadata: dict[str, Any] = self.session.get_modelmeta().custom_metadata_map
        expected = metadata.get(WEIGHTS_DIGEST_KEY)
        if expected is None or expected != files.weights_sha256:
            raise ModelFileError(f"{self.path} was not exported from the weights in "
                                 f"{files.weights} (they changed since, or it was made "
                                 f"elsewhere); re-create it with `{export_hint(files)}`")
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if [i.name for i in inputs] != [INPUT_NAME] or tuple(outputs) != OUTPUT_NAMES:
            raise ModelFileError(f"{self.path}: expected input {INPUT_NAME!r} and outputs "
                                 f"{OUTPUT_NAMES}, found {[i.name for i in inputs]} and "
                                 f"{outputs} (an export by an older pneumoscan?); re-create "
                                 f"it with `{export_hint(files)}`")
        size = files.card.preprocessing.image_size
        if list(inputs[0].shape[1:]) != [1, size, size]:
            raise ModelFileError(f"{self.path}: input shape {inputs[0].shape} does not take "
                                 f"the model card's (1, {size}, {size}) images; re-create it "
                                 f"with `{export_hint(files)}`")

    def run(self, batch: np.ndarray) -> Outputs:
        """Logits ``(B, 2)``, the pneumonia evidence ``(B, h, w)`` and the pooled features
        ``(B, C)`` of a float32 batch, in passes of
        :data:`~pneumoscan.inference.IMAGES_PER_PASS` images."""
        return run_in_passes(self._forward, batch)

    def _forward(self, batch: np.ndarray) -> Outputs:
        feed = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        logits, evidence, pooled = self.session.run(list(OUTPUT_NAMES), feed)
        return logits, evidence, pooled
