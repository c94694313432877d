"""Batched forward passes over resized uint8 images: the one loop every engine goes through.

:func:`run_batches` normalises ``(N, S, S)`` uint8 images a batch at a time (with the one
preprocessing function) and concatenates what a forward function returns for each batch.
The Predictor's backends (ONNX Runtime or PyTorch) go through it, and so does
:func:`predict_logits`, a PyTorch model's logits on any device (training, benchmarks).
PyTorch is imported only when :func:`predict_logits` runs: this module is on the prediction
path of the torch-free install.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.preprocessing import PreprocessConfig, normalize

if TYPE_CHECKING:
    import torch

    from pneumoscan.models import PneumoniaNet

#: A forward pass: a float32 batch ``(B, 1, S, S)`` in, one or more ``(B, ...)`` arrays out.
Forward = Callable[[np.ndarray], tuple[np.ndarray, ...]]

#: Test-time augmentation views: (zoom, shift x, shift y) as fractions of the side.
TTA_VIEWS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0), (0.92, 0.0, 0.0), (1.08, 0.0, 0.0), (1.0, 0.04, 0.0), (1.0, -0.04, 0.0))


def run_batches(forward: Forward, resized: np.ndarray, config: PreprocessConfig, *,
                batch_size: int = 64, progress: Callable[[int], None] | None = None,
                ) -> tuple[np.ndarray, ...]:
    """``forward`` over resized uint8 images ``(N, S, S)``, ``batch_size`` at a time.

    Returns each of ``forward``'s outputs concatenated over the batches, ``(N, ...)``. No
    images give ``forward`` one empty batch, so the outputs keep their trailing shapes.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, max(1, len(resized)), batch_size):
        chunk = resized[start:start + batch_size]
        parts.append(forward(normalize(chunk, config)))  # (B, 1, S, S) float32 in
        if progress is not None:
            progress(len(chunk))
    return tuple(np.concatenate(outputs) for outputs in zip(*parts, strict=True))


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

    from pneumoscan.distributed import autocast

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
