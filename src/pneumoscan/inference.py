"""Batched forward passes of a PyTorch model over already-resized uint8 images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pneumoscan.models import PneumoniaNet
from pneumoscan.preprocessing import PreprocessConfig, normalize


@torch.inference_mode()
def predict_logits(model: PneumoniaNet, resized: np.ndarray, config: PreprocessConfig, *,
                   batch_size: int = 64, progress: Callable[[int], None] | None = None,
                   ) -> np.ndarray:
    """Logits ``(N, 2)`` for resized uint8 images ``(N, S, S)``, model in eval mode."""
    was_training = model.training
    model.eval()
    outputs: list[np.ndarray] = []
    for start in range(0, len(resized), batch_size):
        batch = torch.from_numpy(normalize(resized[start:start + batch_size], config))
        outputs.append(model(batch).float().numpy())
        if progress is not None:
            progress(len(batch))
    model.train(was_training)
    return np.concatenate(outputs) if outputs else np.zeros((0, 2), np.float32)
