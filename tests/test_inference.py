"""The one batched forward loop and a PyTorch model's logits on a device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pneumoscan.inference import TTA_VIEWS, predict_logits, run_batches
from pneumoscan.models import create_model
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


def test_predict_logits_is_the_models_forward_pass_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = create_model("simple_cnn", pretrained=False)
    model.train()
    images = _images(5)
    logits = predict_logits(model, images, CONFIG, batch_size=2)
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(normalize(images, CONFIG))).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert predict_logits(model, _images(0), CONFIG).shape == (0, 2)
    # test-time augmentation averages the views; the first view is the image itself
    averaged = predict_logits(model, images, CONFIG, tta=True)
    assert averaged.shape == (5, 2) and len(TTA_VIEWS) == 5
    assert not np.allclose(averaged, logits, atol=1e-6)
