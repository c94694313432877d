"""The one preprocessing function: resize + normalise, with parameters stored in the model.

Training, evaluation, prediction, the server and the ONNX parity test all call
:func:`preprocess` (or :func:`resize` + :func:`normalize`, its two halves) with the
:class:`PreprocessConfig` read back from ``model.json``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
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


def resize_all(images: Iterable[np.ndarray], image_size: int) -> np.ndarray:
    """:func:`resize` each ``(H, W)`` uint8 image: ``(N, image_size, image_size)`` uint8."""
    return np.stack([resize(image, image_size) for image in images])


def equalize_histogram(resized: np.ndarray) -> np.ndarray:
    """Histogram-equalise each uint8 image of ``(..., H, W)``: its CDF becomes the new value.

    Any monotonic change of exposure or contrast gives the same output, which is what makes
    it a defence against radiographs from another machine or setting.
    """
    flat = resized.reshape(-1, resized.shape[-2] * resized.shape[-1])
    out = np.empty_like(flat)
    for i, image in enumerate(flat):
        out[i] = np.take(equalization_lut(image), image)
    return out.reshape(resized.shape)


def equalization_lut(image: np.ndarray) -> np.ndarray:
    """The ``(256,)`` uint8 table that equalises ``image`` (uint8, any shape)."""
    cdf = np.cumsum(np.bincount(image.ravel(), minlength=256))
    low = cdf[np.argmax(cdf > 0)]  # the count at the darkest grey level present
    span = max(1, int(cdf[-1] - low))
    return np.clip(np.rint((cdf - low) / span * 255.0), 0, 255).astype(np.uint8)


def normalize(resized: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Map uint8 pixels ``(..., H, W)`` to float32 ``(..., 1, H, W)`` model input.

    Applies the histogram equalisation first when the config asks for it. Each image goes
    through one 256-entry float table (equalisation and scaling folded together): one pass
    over its pixels instead of five, and the same values as scaling them one by one.
    """
    if resized.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {resized.dtype}")
    flat = resized.reshape(-1, resized.shape[-2] * resized.shape[-1])
    out = np.empty(flat.shape, dtype=np.float32)
    values = input_values(config)
    for i, image in enumerate(flat):
        table = values[equalization_lut(image)] if config.equalize else values
        np.take(table, image, out=out[i])
    return out.reshape(*resized.shape[:-2], 1, *resized.shape[-2:])


def input_values(config: PreprocessConfig) -> np.ndarray:
    """The model input value of each grey level, ``(v / 255 - mean) / std``: ``(256,)``
    float32, computed in float32 exactly as a scaled image would be (read-only: one table
    per ``mean`` and ``std``, shared by every call)."""
    return _input_values(config.mean, config.std)


@functools.lru_cache(maxsize=8)
def _input_values(mean: float, std: float) -> np.ndarray:
    values = (np.arange(256, dtype=np.float32) / 255.0 - mean) / std
    values.flags.writeable = False
    return values


def preprocess(pixels: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Turn a decoded ``(H, W)`` uint8 image into a ``(1, S, S)`` float32 model input."""
    return normalize(resize(pixels, config.image_size), config)
