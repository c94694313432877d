"""A PyTorch model's logits on any device, through the one batch loop (training, benchmarks).

Fitting only: the runtime predicts through :mod:`pneumoscan.backends`, which needs no PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.inference import run_batches
from pneumoscan.preprocessing import PreprocessConfig

if TYPE_CHECKING:
    import torch

    from pneumoscan.models import PneumoniaNet

#: Test-time augmentation views: (zoom, shift x, shift y) as fractions of the side.
TTA_VIEWS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0), (0.92, 0.0, 0.0), (1.08, 0.0, 0.0), (1.0, 0.04, 0.0), (1.0, -0.04, 0.0))


def _view(batch: torch.Tensor, zoom: float, dx: float, dy: float) -> torch.Tensor:
    import torch.nn.functional as F  # noqa: N812

    if (zoom, dx, dy) == (1.0, 0.0, 0.0):
        return batch
    theta = batch.new_tensor([[1 / zoom, 0.0, 2 * dx], [0.0, 1 / zoom, 2 * dy]])
    grid = F.affine_grid(theta.expand(batch.shape[0], 2, 3), list(batch.shape),
                         align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def predict_logits(model: PneumoniaNet, resized: np.ndarray, config: PreprocessConfig, *,
                   device: torch.device | str = "cpu", batch_size: int = 64,
                   progress: Callable[[int], None] | None = None,
                   tta: bool = False) -> np.ndarray:
    """Logits ``(N, 2)`` of a PyTorch model for resized uint8 images ``(N, S, S)``.

    Each batch is moved to ``device`` (the model must be there already) and run in eval
    mode and inference mode, in mixed precision on CUDA; the model's training mode is
    restored afterwards. With ``tta`` the logits are averaged over :data:`TTA_VIEWS`.
    """
    import torch

    from pneumoscan.fitting.distributed import autocast

    device = torch.device(device)
    views = TTA_VIEWS if tta else TTA_VIEWS[:1]

    def forward(batch: np.ndarray) -> tuple[np.ndarray]:
        inputs = torch.from_numpy(batch).to(device)
        with torch.inference_mode(), autocast(device):
            logits = torch.stack([model(_view(inputs, *view)) for view in views]).mean(dim=0)
        return (logits.float().cpu().numpy(),)

    was_training = model.training
    model.eval()
    try:
        (logits,) = run_batches(forward, resized, config, batch_size=batch_size,
                                progress=progress)
    finally:
        model.train(was_training)
    return logits


def predict_evidence(model: PneumoniaNet, resized: np.ndarray, config: PreprocessConfig, *,
                     device: torch.device | str = "cpu", batch_size: int = 64) -> np.ndarray:
    """The pneumonia evidence maps ``(N, h, w)`` of a PyTorch model for resized uint8 images
    ``(N, S, S)`` (:meth:`~pneumoscan.models.PneumoniaNet.forward_with_evidence`), in eval
    mode; the model's training mode is restored afterwards."""
    import torch

    from pneumoscan.fitting.distributed import autocast

    device = torch.device(device)

    def forward(batch: np.ndarray) -> tuple[np.ndarray]:
        with torch.inference_mode(), autocast(device):
            _, evidence, _ = model.forward_with_evidence(torch.from_numpy(batch).to(device))
        return (evidence.float().cpu().numpy(),)

    was_training = model.training
    model.eval()
    try:
        (evidence,) = run_batches(forward, resized, config, batch_size=batch_size)
    finally:
        model.train(was_training)
    return evidence
