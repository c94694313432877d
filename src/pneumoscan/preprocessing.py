"""The one preprocessing function: resize + normalise, with parameters stored in the model.

Training, evaluation, prediction, the server and the ONNX parity test all call
:func:`preprocess` (or :func:`resize` + :func:`normalize`, its two halves) with the
:class:`PreprocessConfig` read back from ``model.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes a model input.

    The training data was squashed to a square without keeping the aspect ratio, so every
    input is squashed the same way ("squash") to match what the model saw.
    """

    image_size: int = 224  # side of the square model input, pixels
    mean: float = 0.449  # ImageNet mean of the three channels, for a grayscale input
    std: float = 0.226  # ImageNet std of the three channels
    resize: str = "squash"  # the only mode: stretch to image_size x image_size
    equalize: bool = False  # histogram-equalise each image after resizing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        known = {k: data[k] for k in ("image_size", "mean", "std", "resize", "equalize")
                 if k in data}
        config = cls(**known)
        if config.resize != "squash":
            raise ValueError(f"unknown resize mode {config.resize!r}; expected 'squash'")
        return config


def resize(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """Squash a ``(H, W)`` uint8 image to ``(image_size, image_size)`` uint8.

    Pillow's antialiased bilinear filter makes the result nearly independent of the input
    resolution (a 2,000 px original and its 224 px copy give the same model input).
    """
    if pixels.shape == (image_size, image_size):
        return pixels
    image = Image.fromarray(pixels, mode="L") if pixels.dtype == np.uint8 else \
        Image.fromarray(pixels.astype(np.uint8), mode="L")
    return np.asarray(image.resize((image_size, image_size), Image.Resampling.BILINEAR))


def equalize_histogram(resized: np.ndarray) -> np.ndarray:
    """Histogram-equalise each uint8 image of ``(..., H, W)``: its CDF becomes the new value.

    Any monotonic change of exposure or contrast gives the same output, which is what makes
    it a defence against radiographs from another machine or setting.
    """
    flat = resized.reshape(-1, resized.shape[-2] * resized.shape[-1])
    out = np.empty_like(flat)
    for i, image in enumerate(flat):
        cdf = np.cumsum(np.bincount(image, minlength=256))
        low = cdf[cdf > 0][0]
        span = max(1, int(cdf[-1] - low))
        lut = np.clip(np.rint((cdf - low) / span * 255.0), 0, 255).astype(np.uint8)
        out[i] = lut[image]
    return out.reshape(resized.shape)


def normalize(resized: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Map uint8 pixels ``(..., H, W)`` to float32 ``(..., 1, H, W)`` model input.

    Applies the histogram equalisation first when the config asks for it.
    """
    if resized.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {resized.dtype}")
    if config.equalize:
        resized = equalize_histogram(resized)
    scaled = resized.astype(np.float32) / 255.0
    return ((scaled - config.mean) / config.std)[..., None, :, :].astype(np.float32)


def preprocess(pixels: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Turn a decoded ``(H, W)`` uint8 image into a ``(1, S, S)`` float32 model input."""
    return normalize(resize(pixels, config.image_size), config)
