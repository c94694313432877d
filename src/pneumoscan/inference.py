"""Batched forward passes: the one loop every engine goes through.

:func:`run_batches` normalises ``(N, S, S)`` uint8 images a batch at a time (with the one
preprocessing function) and concatenates what a forward function returns for each batch.
The Predictor's backends (ONNX Runtime or PyTorch) go through it, and so does
:func:`pneumoscan.fitting.logits.predict_logits` (training, benchmarks). Each backend runs
what it is given in passes of :data:`IMAGES_PER_PASS` images (:func:`in_passes`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pneumoscan.preprocessing import PreprocessConfig, normalize

#: A forward pass: a float32 batch ``(B, 1, S, S)`` in, one or more ``(B, ...)`` arrays out.
Forward = Callable[[np.ndarray], tuple[np.ndarray, ...]]

#: Images per pass of a network on the CPU; a larger batch goes through in passes of this
#: many. A small pass keeps its activations in cache: the shipped model on ONNX Runtime
#: (2 threads, each image two views with flip averaging) ran 2-4 images a pass at 320-334
#: images/s, 8 at 295 and 32 at 256. It also bounds what a pass holds: a heat map's 65
#: covered copies at once held 815 MB of ONNX Runtime's arena, 8 at a time 205 MB.
IMAGES_PER_PASS = 4


def in_passes(forward: Forward, batch: np.ndarray, size: int = IMAGES_PER_PASS,
              ) -> tuple[np.ndarray, ...]:
    """``forward`` over a float32 batch ``(B, 1, S, S)`` in passes of ``size`` images, each
    output concatenated as if it had been one pass."""
    return _joined([forward(batch[start:start + size])
                    for start in range(0, max(1, len(batch)), size)])


def _joined(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Each output of a forward function, concatenated over its calls."""
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(outputs) for outputs in zip(*parts, strict=True))


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
    return _joined(parts)
