"""Batched forward passes over resized uint8 images: the one loop every engine goes through.

:func:`run_batches` normalises ``(N, S, S)`` uint8 images a batch at a time (with the one
preprocessing function) and concatenates what a forward function returns for each batch.
The Predictor's backends (ONNX Runtime or PyTorch) go through it, and so does
:func:`pneumoscan.fitting.logits.predict_logits` (training, benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pneumoscan.preprocessing import PreprocessConfig, normalize

#: A forward pass: a float32 batch ``(B, 1, S, S)`` in, one or more ``(B, ...)`` arrays out.
Forward = Callable[[np.ndarray], tuple[np.ndarray, ...]]


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
