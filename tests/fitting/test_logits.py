"""A PyTorch model's logits on a device, through the one batch loop."""

from __future__ import annotations

import numpy as np
import torch

from pneumoscan.fitting.logits import TTA_VIEWS, predict_logits
from pneumoscan.models import create_model
from pneumoscan.preprocessing import PreprocessConfig, normalize

CONFIG = PreprocessConfig(image_size=32)


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, 32, 32), dtype=np.uint8)


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
