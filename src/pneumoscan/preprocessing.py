"""The one preprocessing: resize + normalise, with parameters stored in the model.

Training, evaluation, prediction, the server and the ONNX parity test all call
:func:`resize` (or :func:`resize_all`) and then :func:`normalize`, with the
:class:`PreprocessConfig` read back from ``model.json``; the resized image between the two
also feeds the scope check.
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
    equalize_midtones: bool = False  # the equalisation counts grey levels 1-254 only: pure
    # black and pure white (a frame, a burnt-in border) keep their level and do not squeeze
    # the film's own tones; False: every level counts (models before December 2026)
    source_size: int = 0  # every image first squashed to this side with an area filter
    # (the training data's 224 px); 0: straight to image_size (models before December 2026)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        known = {k: data[k] for k in ("image_size", "mean", "std", "resize", "equalize",
                                      "equalize_midtones", "source_size") if k in data}
        config = cls(**known)
        if config.resize != "squash":
            raise ValueError(f"unknown resize mode {config.resize!r}; expected 'squash'")
        return config


def resize(pixels: np.ndarray, image_size: int, source_size: int = 0) -> np.ndarray:
    """Squash a ``(H, W)`` uint8 image to ``(image_size, image_size)`` uint8.

    With ``source_size`` (a model's ``preprocessing.source_size``: the training data's side)
    the image is first squashed to ``source_size`` with an area filter (Pillow's box filter;
    bilinear when it is smaller), then to ``image_size`` with Pillow's antialiased bilinear
    filter, exactly as a training image of that size is. A 2,000 px original, its 1,000 px
    copy and its 224 px copy so take the same path from 224 px on, whatever the source.
    """
    if pixels.shape == (image_size, image_size) and source_size in (0, image_size):
        return pixels
    image = Image.fromarray(pixels, mode="L") if pixels.dtype == np.uint8 else \
        Image.fromarray(pixels.astype(np.uint8), mode="L")
    if source_size and image.size != (source_size, source_size):
        shrinking = image.width >= source_size and image.height >= source_size
        image = image.resize((source_size, source_size), Image.Resampling.BOX if shrinking
                             else Image.Resampling.BILINEAR)
    if image.size == (image_size, image_size):
        return np.asarray(image)
    return np.asarray(image.resize((image_size, image_size), Image.Resampling.BILINEAR))


def resize_all(images: Iterable[np.ndarray], image_size: int,
               source_size: int = 0) -> np.ndarray:
    """:func:`resize` each ``(H, W)`` uint8 image: ``(N, image_size, image_size)`` uint8."""
    return np.stack([resize(image, image_size, source_size) for image in images])


def equalization_lut(image: np.ndarray, midtones: bool = False) -> np.ndarray:
    """The ``(256,)`` uint8 table that histogram-equalises ``image`` (uint8, any shape): its
    CDF becomes the new value. Any monotonic change of exposure or contrast gives the same
    output, which is what makes it a defence against radiographs from another machine or
    setting.

    With ``midtones`` the histogram counts grey levels 1-254 only (when the image has any):
    pure black stays 0 and pure white 255, and a white or black frame around a film, a third
    of its pixels at one level, no longer pushes every other tone of the film up or down.
    """
    counts = np.bincount(image.ravel(), minlength=256)
    if midtones and counts[1:255].any():
        counts[0] = counts[255] = 0
    cdf = np.cumsum(counts)
    low = cdf[np.argmax(cdf > 0)]  # the count at the darkest grey level counted
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
        table = (values[equalization_lut(image, config.equalize_midtones)] if config.equalize
                 else values)
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
