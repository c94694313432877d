"""Batched forward passes of a PyTorch model over already-resized uint8 images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from pneumoscan.models import PneumoniaNet
from pneumoscan.preprocessing import PreprocessConfig, normalize

#: Test-time augmentation views: (zoom, shift x, shift y) as fractions of the side.
TTA_VIEWS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0), (0.92, 0.0, 0.0), (1.08, 0.0, 0.0), (1.0, 0.04, 0.0), (1.0, -0.04, 0.0))


def _view(batch: torch.Tensor, zoom: float, dx: float, dy: float) -> torch.Tensor:
    if (zoom, dx, dy) == (1.0, 0.0, 0.0):
        return batch
    theta = torch.tensor([[1 / zoom, 0.0, 2 * dx], [0.0, 1 / zoom, 2 * dy]],
                         dtype=batch.dtype).expand(batch.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


@torch.inference_mode()
def predict_logits(model: PneumoniaNet, resized: np.ndarray, config: PreprocessConfig, *,
                   batch_size: int = 64, progress: Callable[[int], None] | None = None,
                   tta: bool = False) -> np.ndarray:
    """Logits ``(N, 2)`` for resized uint8 images ``(N, S, S)``, model in eval mode.

    With ``tta`` the logits are averaged over :data:`TTA_VIEWS` (mild zooms and shifts).
    """
    was_training = model.training
    model.eval()
    outputs: list[np.ndarray] = []
    for start in range(0, len(resized), batch_size):
        batch = torch.from_numpy(normalize(resized[start:start + batch_size], config))
        views = TTA_VIEWS if tta else TTA_VIEWS[:1]
        logits = torch.stack([model(_view(batch, *view)) for view in views]).mean(dim=0)
        outputs.append(logits.float().numpy())
        if progress is not None:
            progress(len(batch))
    model.train(was_training)
    return np.concatenate(outputs) if outputs else np.zeros((0, 2), np.float32)
