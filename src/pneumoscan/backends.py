"""Inference backends: run a ``(B, 1, S, S)`` float32 batch, return logits and features.

Every backend returns ``(logits (B, 2), features (B, C, h, w))`` as numpy arrays, so the
Predictor computes probabilities, CAM heat maps and the scope check the same way whatever
runs the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Backend(Protocol):
    """What the Predictor needs from an inference engine."""

    name: str

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(B, 2)`` and last feature map ``(B, C, h, w)`` for a float32 batch."""
        ...


class TorchBackend:
    """PyTorch on the CPU, in inference mode."""

    name = "torch"

    def __init__(self, weights_path: Path | str | None) -> None:
        import torch

        from pneumoscan.modelfile import load_model

        self._torch = torch
        self.model, self.card = load_model(weights_path)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            logits, features = self.model.forward_with_features(self._torch.from_numpy(batch))
        return logits.float().numpy(), features.float().numpy()


def available_backends() -> list[str]:
    """Names of the backends whose libraries are installed, fastest first."""
    import importlib.util

    names = []
    if importlib.util.find_spec("onnxruntime") is not None and \
            importlib.util.find_spec("pneumoscan.onnx_backend") is not None:
        names.append("onnx")
    if importlib.util.find_spec("torch") is not None:
        names.append("torch")
    return names


def create_backend(name: str, model_path: Path | str | None) -> Backend:
    """Build the backend ``name`` ("torch", "onnx" or "auto": the fastest installed)."""
    if name == "auto":
        installed = available_backends()
        if not installed:
            raise RuntimeError("no inference backend installed: pip install 'pneumoscan[torch]' "
                               "or 'pneumoscan[onnx]'")
        name = installed[0]
    if name == "torch":
        return TorchBackend(model_path)
    if name == "onnx":
        from pneumoscan.onnx_backend import OnnxBackend  # type: ignore[import-not-found]

        return OnnxBackend(model_path)  # type: ignore[no-any-return]
    raise ValueError(f"unknown backend {name!r}; expected 'auto', 'torch' or 'onnx'")
