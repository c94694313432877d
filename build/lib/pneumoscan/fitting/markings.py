"""Burned-in annotations and border bands, as acquisition systems leave them on radiographs.

A film from another machine carries a timestamp, a technique label, a side marker of another
size, or black or white bands where the collimator or the scanner cut it. None of it says
anything about the lungs, so training draws them on both classes (a model must not learn
"our usual normal film" from them) and the shift suite draws them on validation images to
measure whether it did. Both use these functions, drawn with Pillow, deterministic for a
given ``numpy.random.Generator``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
_WORDS = ("AP", "PA", "PORTABLE", "SUPINE", "ERECT", "CHEST", "kV 70", "mAs 2.5", "CR",
          "DX", "PEDS", "SEMI-ERECT", "ROOM 3", "1.0", "STAT")


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def random_annotation(rng: np.random.Generator) -> tuple[str, bool]:
    """One piece of burned-in text and whether it is boxed (side markers often are)."""
    kind = rng.integers(4)
    if kind == 0:  # timestamp
        return (f"{rng.integers(2000, 2030)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
                f" {rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}", False)
    if kind == 1:  # side marker
        return str(rng.choice(["R", "L", "R", "L", "RT", "LT"])), bool(rng.random() < 0.4)
    if kind == 2:  # technique label
        return " ".join(str(w) for w in rng.choice(_WORDS, size=rng.integers(1, 3))), False
    letters = "".join(chr(65 + int(c)) for c in rng.integers(0, 26, size=rng.integers(1, 4)))
    return f"{letters}{rng.integers(0, 10_000)}", False  # accession-like code


def draw_annotation(image: np.ndarray, text: str, corner: str, size: float, value: float,
                    boxed: bool = False, margin: float = 0.03) -> np.ndarray:
    """Return ``image`` (H, W) float in [0, 1] with ``text`` burned in at ``corner``.

    Args:
        size: the text height as a fraction of the image height.
        value: the grey level of the text (1 white, 0 black).
        boxed: draw a rectangle around the text.
        margin: distance from the edges as a fraction of the side.
    """
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}, got {corner!r}")
    height, width = image.shape
    font = _font(max(4, round(size * height)))
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(1, round(0.2 * (bottom - top))) if boxed else 0
    text_w, text_h = right - left + 2 * pad, bottom - top + 2 * pad
    x = round(margin * width) if "left" in corner else width - round(margin * width) - text_w
    y = round(margin * height) if "top" in corner else height - round(margin * height) - text_h
    draw.text((x + pad - left, y + pad - top), text, fill=255, font=font)
    if boxed:
        draw.rectangle((x, y, x + text_w, y + text_h), outline=255, width=max(1, pad // 2))
    alpha = np.asarray(mask, dtype=np.float32) / 255.0
    return image * (1 - alpha) + value * alpha


def draw_border(image: np.ndarray, widths: tuple[float, float, float, float],
                value: float) -> np.ndarray:
    """Return ``image`` with bands of grey ``value`` along its (top, bottom, left, right)
    edges, each as a fraction of the side."""
    out = image.copy()
    height, width = image.shape
    top, bottom, left, right = (round(f * s) for f, s in zip(widths, (height, height,
                                                                         width, width),
                                                             strict=True))
    out[:top] = value
    out[height - bottom:] = value
    out[:, :left] = value
    out[:, width - right:] = value
    return out


def random_markings(image: np.ndarray, rng: np.random.Generator, *, annotate: bool,
                    border: bool, frame: float = 0.0) -> np.ndarray:
    """Burn one to three random annotations into ``image`` and/or add random border bands
    (with probability ``frame`` on all four sides, else on each side with probability 1/2)."""
    if border:
        full = frame > 0 and rng.random() < frame
        widths = tuple(float(w) if full or rng.random() < 0.5 else 0.0
                       for w in rng.uniform(0.02, 0.12, size=4))
        image = draw_border(image, widths, float(rng.choice([0.0, 1.0])))  # type: ignore[arg-type]
    if annotate:
        corners = rng.permutation(len(CORNERS))
        for k in range(int(rng.integers(1, 4))):
            text, boxed = random_annotation(rng)
            value = float(rng.uniform(0.85, 1.0) if rng.random() < 0.8 else rng.uniform(0, 0.1))
            image = draw_annotation(image, text, CORNERS[corners[k]],
                                    float(rng.uniform(0.035, 0.09)), value, boxed,
                                    margin=float(rng.uniform(0.01, 0.06)))
    return image
