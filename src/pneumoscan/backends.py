"""Inference backends: run a ``(B, 1, S, S)`` float32 batch, return logits and evidence.

Every backend returns ``(logits (B, 2), evidence (B, h, w), pooled (B, C))`` as numpy
arrays (:meth:`~pneumoscan.models.PneumoniaNet.forward_with_evidence`), so the Predictor
computes probabilities, heat maps and the scope check the same way whatever runs the
network.

- ``onnx``: ONNX Runtime on the model's ONNX export (``pneumoscan export``), the faster of
  the two on a CPU and the only one that needs no PyTorch (``pneumoscan.onnx_backend``).
- ``torch``: PyTorch, in inference mode, channels-last.
- ``auto``: ``onnx`` when ONNX Runtime is installed and the model's ONNX export exists and
  matches its weights, else ``torch``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pneumoscan.errors import MissingDependencyError, ModelFileError
from pneumoscan.extras import installed, require
from pneumoscan.inference import in_passes
from pneumoscan.modelfile import ModelFiles, ModelLike, resolve_model

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "onnx", "torch")

#: A backend's outputs: logits, pneumonia evidence and pooled features of a batch.
Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]


class Backend(Protocol):
    """What the Predictor needs from an inference engine."""

    name: str

    def run(self, batch: np.ndarray) -> Outputs:
        """Logits ``(B, 2)``, the pneumonia evidence ``(B, h, w)`` and the pooled features
        ``(B, C)`` of a float32 batch."""
        ...


def run_in_passes(forward: Callable[[np.ndarray], Outputs], batch: np.ndarray) -> Outputs:
    """A backend's ``forward`` over ``batch`` in passes of
    :data:`~pneumoscan.inference.IMAGES_PER_PASS` images."""
    logits, evidence, pooled = in_passes(forward, batch)
    return logits, evidence, pooled


def default_threads() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's core count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def prepare_torch_model(model: nn.Module) -> nn.Module:
    """Eval mode and channels-last memory layout: what every CPU forward pass here uses.

    Channels-last lets oneDNN run its blocked convolution kernels without reordering
    every activation; on EfficientNet-Lite0 it made a batch of 32 about 2.5x faster.
    """
    import torch

    return model.eval().to(memory_format=torch.channels_last)


class TorchBackend:
    """PyTorch on the CPU, in inference mode, channels-last."""

    name = "torch"

    def __init__(self, model: ModelLike, *, threads: int | None = None) -> None:
        import torch

        from pneumoscan.modelfile import load_model

        self._torch = torch
        if threads is not None:
            torch.set_num_threads(threads)  # process-wide: PyTorch has one intra-op pool
        self.model, self.card = load_model(model)
        prepare_torch_model(self.model)

    def run(self, batch: np.ndarray) -> Outputs:
        """Logits, evidence and pooled features (see :class:`Backend`), in passes of
        :data:`~pneumoscan.inference.IMAGES_PER_PASS` images."""
        return run_in_passes(self._forward, batch)

    def _forward(self, batch: np.ndarray) -> Outputs:
        with self._torch.inference_mode():
            logits, evidence, pooled = self.model.forward_with_evidence(
                self._torch.from_numpy(batch))
        return logits.float().numpy(), evidence.float().numpy(), pooled.float().numpy()


def available_backends() -> list[str]:
    """Names of the backends whose libraries are installed, fastest first."""
    names = []
    if installed("onnxruntime") and installed("pneumoscan.onnx_backend"):
        names.append("onnx")
    if installed("torch"):
        names.append("torch")
    return names


def create_backend(name: str, model: ModelLike, *, threads: int | None = None) -> Backend:
    """Build the backend ``name``: "onnx", "torch" or "auto" (see the module docstring).

    Args:
        name: "auto", "onnx" or "torch".
        model: a model folder, a ``.safetensors`` file, None (the shipped model), or one
            already resolved (:func:`~pneumoscan.modelfile.resolve_model`).
        threads: intra-op threads (default: the library's own choice for torch, every
            usable CPU for onnx).

    Raises:
        ValueError: an unknown backend name.
        ModelFileError: the model (or, for "onnx", its ONNX export) is missing or invalid.
        MissingDependencyError: the backend's library (for "auto": any) is not installed.
    """
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKEND_NAMES}")
    files = resolve_model(model)
    if name == "auto":
        return _create_automatically(files, threads)
    if name == "torch":
        require("--backend torch", ("torch",), "torch")
        return TorchBackend(files, threads=threads)
    require("--backend onnx", ("onnxruntime",), "onnx")
    from pneumoscan.onnx_backend import OnnxBackend

    return OnnxBackend(files, threads=threads)


def _create_automatically(files: ModelFiles, threads: int | None) -> Backend:
    installed = available_backends()
    if not installed:
        raise MissingDependencyError("no inference backend installed: pip install "
                                     "'pneumoscan[onnx]' (with an exported model) or "
                                     "'pneumoscan[torch]'")
    if "onnx" in installed:
        from pneumoscan.onnx_backend import OnnxBackend, export_hint, onnx_path_for

        if onnx_path_for(files).is_file() or "torch" not in installed:
            try:
                return OnnxBackend(files, threads=threads)
            except ModelFileError as exc:
                if "torch" not in installed:
                    raise
                logger.warning("%s; using the torch backend", exc)
        else:
            logger.info("no ONNX export beside the model; using the torch backend (faster "
                        "on a CPU: `%s`)", export_hint(files))
    return TorchBackend(files, threads=threads)
