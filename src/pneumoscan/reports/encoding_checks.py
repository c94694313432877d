"""The same film, encoded otherwise: what the encoding benchmark and tests compare.

A film reaches the model at its original resolution (a 1,000-3,000 px DICOM), as a small
copy (the training data was squashed to 224 px and saved as JPEG), re-encoded at some JPEG
quality, or resampled by some other program's filter. Each variant here is one such path;
the model's P(pneumonia) should not care which one a film took.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

#: Pillow filters another program might have resized with.
FILTERS = {"box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
           "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
#: JPEG qualities of the sweep.
QUALITIES = (50, 75, 90, 95)
#: Side of the training data's copies.
COPY_SIDE = 224


def jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """``(H, W)`` uint8 through a grayscale JPEG at ``quality`` and back."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))


def squashed_copy(pixels: np.ndarray, resample: Image.Resampling = Image.Resampling.BILINEAR,
                  quality: int | None = 95, side: int = COPY_SIDE) -> np.ndarray:
    """The film squashed to ``side`` x ``side`` with ``resample`` and, unless ``quality`` is
    None, saved as JPEG: the kind of copy the training data is."""
    small = np.asarray(Image.fromarray(pixels, mode="L").resize((side, side), resample))
    return small if quality is None else jpeg_round_trip(small, quality)


def resolution_variants(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """A full-resolution film's small copies: every filter, as PNG and as JPEG q95/q75."""
    variants = {}
    for name, resample in FILTERS.items():
        variants[f"224 px {name}"] = squashed_copy(pixels, resample, None)
        variants[f"224 px {name} + JPEG 95"] = squashed_copy(pixels, resample, 95)
    variants["224 px bilinear + JPEG 75"] = squashed_copy(pixels, Image.Resampling.BILINEAR, 75)
    return variants


def quality_variants(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The film re-encoded at each JPEG quality of :data:`QUALITIES`."""
    return {f"JPEG {q}": jpeg_round_trip(pixels, q) for q in QUALITIES}


def largest_changes(probability: Callable[[list[np.ndarray]], np.ndarray],
                    films: list[np.ndarray],
                    variants: Callable[[np.ndarray], dict[str, np.ndarray]],
                    ) -> dict[str, np.ndarray]:
    """For each variant name, ``|P(variant) - P(film)|`` ``(N,)`` over ``films``."""
    changes: dict[str, list[float]] = {}
    for film in films:
        made = variants(film)
        values = probability([film, *made.values()])
        for name, value in zip(made, values[1:], strict=True):
            changes.setdefault(name, []).append(abs(float(value) - float(values[0])))
    return {name: np.array(v) for name, v in changes.items()}
