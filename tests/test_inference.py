"""The one batched forward loop."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscan.inference import IMAGES_PER_PASS, in_passes, run_batches
from pneumoscan.preprocessing import PreprocessConfig, normalize

CONFIG = PreprocessConfig(image_size=32)


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, 32, 32), dtype=np.uint8)


def test_run_batches_concatenates_every_output_in_order() -> None:
    images = _images(7)
    seen: list[int] = []
    sizes: list[int] = []

    def forward(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sizes.append(len(batch))
        return batch.mean(axis=(1, 2, 3)), batch[:, 0, :2, 0]  # (B,), (B, 2)

    means, corners = run_batches(forward, images, CONFIG, batch_size=3, progress=seen.append)
    normalized = normalize(images, CONFIG)
    assert sizes == seen == [3, 3, 1]
    np.testing.assert_allclose(means, normalized.mean(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_array_equal(corners, normalized[:, 0, :2, 0])
    with pytest.raises(ValueError, match="batch_size"):
        run_batches(forward, images, CONFIG, batch_size=0)


def test_run_batches_of_nothing_keeps_the_output_shapes() -> None:
    (out,) = run_batches(lambda batch: (np.zeros((len(batch), 2)),), _images(0), CONFIG)
    assert out.shape == (0, 2)


def test_a_batch_goes_through_in_passes_of_a_few_images() -> None:
    batch = np.random.default_rng(0).normal(size=(2 * IMAGES_PER_PASS + 1, 1, 8, 8))
    sizes: list[int] = []

    def forward(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sizes.append(len(part))
        return part.sum(axis=(1, 2, 3)), part[:, 0, 0]  # (B,), (B, 8)

    sums, rows = in_passes(forward, batch)
    assert sizes == [IMAGES_PER_PASS, IMAGES_PER_PASS, 1]
    np.testing.assert_allclose(sums, batch.sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(rows, batch[:, 0, 0])
