"""The shift suite: named, seeded, deterministic changes a radiograph from another machine,
site or protocol brings, applied to validation images to see whether a model holds up.

Clean validation cannot see a model that learned the look of the usual normal film (the
shipped model of November 2026 scored AUC 0.998 on it and 0.955 on the test split); the
same validation under tighter framing, burned-in text, borders or another tone can. Each
shift maps one ``(H, W)`` uint8 image to another of the same shape and keeps its label; the
random ones (annotations, noise) draw from a generator seeded with the suite's seed, the
shift's index and the image's index, so every model sees the same images in any batch.

Shifts act on the source-size image (224 px in the shared data), before the model's own
resize, as a different acquisition would.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image, ImageFilter

from pneumoscan.fitting.markings import CORNERS, draw_annotation, draw_border, random_markings

#: The side at which shifts act: the shared images' size, before the model's own resize.
SOURCE_SIZE = 224

ShiftFunction = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Shift:
    """One named change of an ``(H, W)`` uint8 image; ``apply(image, rng)``."""

    name: str
    group: str  # framing, orientation, markings, tone, sharpness, resolution, noise
    apply: ShiftFunction


def _as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def _as_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def centre_crop(image: np.ndarray, _: np.random.Generator, *, keep: float) -> np.ndarray:
    """Tighter framing: the central ``keep`` of each side, resized back to the full size."""
    height, width = image.shape
    h, w = round(height * keep), round(width * keep)
    top, left = (height - h) // 2, (width - w) // 2
    crop = Image.fromarray(image[top:top + h, left:left + w])
    return np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR))


def zoom_out(image: np.ndarray, _: np.random.Generator, *, scale: float,
             fill: int = 0) -> np.ndarray:
    """Wider framing: the image shrunk to ``scale`` of each side, centred on grey ``fill``."""
    height, width = image.shape
    h, w = round(height * scale), round(width * scale)
    out = np.full_like(image, fill)
    small = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
    top, left = (height - h) // 2, (width - w) // 2
    out[top:top + h, left:left + w] = small
    return out


def translate(image: np.ndarray, _: np.random.Generator, *, dx: float,
              dy: float) -> np.ndarray:
    """The patient off-centre: shifted by (dx, dy) fractions of the side, black fill."""
    height, width = image.shape
    x, y = round(dx * width), round(dy * height)
    out = np.zeros_like(image)
    out[max(0, y):height + min(0, y), max(0, x):width + min(0, x)] = \
        image[max(0, -y):height - max(0, y), max(0, -x):width - max(0, x)]
    return out


def hflip(image: np.ndarray, _: np.random.Generator) -> np.ndarray:
    return image[:, ::-1].copy()


def burned_in_text(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One to three burned-in texts (timestamps, codes, technique labels, L/R markers) at random
    corners, as in :mod:`pneumoscan.fitting.markings`."""
    return _as_uint8(random_markings(_as_float(image), rng, annotate=True, border=False))


def timestamp_and_label(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The test split's other protocol: a timestamp top right, a technique label bottom
    right and a large side marker top left."""
    out = _as_float(image)
    stamp = (f"{rng.integers(2010, 2020)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
             f" {rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}")
    out = draw_annotation(out, stamp, "top-right", 0.045, 1.0)
    out = draw_annotation(out, "PORTABLE AP", "bottom-right", 0.045, 1.0)
    out = draw_annotation(out, str(rng.choice(["R", "L"])), "top-left", 0.10, 1.0, boxed=True)
    return _as_uint8(out)


def side_marker(image: np.ndarray, rng: np.random.Generator, *, size: float) -> np.ndarray:
    """One boxed L/R marker of ``size`` (fraction of the height) at a random corner."""
    corner = CORNERS[int(rng.integers(len(CORNERS)))]
    out = draw_annotation(_as_float(image), str(rng.choice(["R", "L"])), corner, size, 1.0,
                          boxed=True)
    return _as_uint8(out)


def border(image: np.ndarray, _: np.random.Generator, *, width: float,
           value: float) -> np.ndarray:
    """Bands of grey ``value`` (0 black, 1 white), ``width`` of the side, on all four edges."""
    return _as_uint8(draw_border(_as_float(image), (width,) * 4, value))


def gamma(image: np.ndarray, _: np.random.Generator, *, exponent: float) -> np.ndarray:
    return _as_uint8(_as_float(image) ** exponent)


def s_curve(image: np.ndarray, _: np.random.Generator, *, strength: float) -> np.ndarray:
    """A film-like tone curve: contrast raised in the mid-tones, toes and shoulders kept."""
    x = _as_float(image)
    curved = 1.0 / (1.0 + np.exp(-strength * (x - 0.5)))
    low, high = 1.0 / (1.0 + np.exp(strength * 0.5)), 1.0 / (1.0 + np.exp(-strength * 0.5))
    return _as_uint8((curved - low) / (high - low))


def blur(image: np.ndarray, _: np.random.Generator, *, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def sharpen(image: np.ndarray, _: np.random.Generator) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(
        ImageFilter.UnsharpMask(radius=2, percent=150, threshold=0)))


def half_resolution(image: np.ndarray, _: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    small = Image.fromarray(image).resize((width // 2, height // 2), Image.Resampling.BILINEAR)
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))


def jpeg(image: np.ndarray, _: np.random.Generator, *, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("L"))


def noise(image: np.ndarray, rng: np.random.Generator, *, sigma: float) -> np.ndarray:
    """Gaussian noise of ``sigma`` grey levels."""
    return np.clip(np.rint(image + rng.normal(0.0, sigma, image.shape)), 0, 255).astype(
        np.uint8)


#: The suite, in the order of its table. "none" is the clean image.
SHIFTS: tuple[Shift, ...] = (
    Shift("none", "clean", lambda image, _: image),
    Shift("crop 90%", "framing", partial(centre_crop, keep=0.90)),
    Shift("crop 84%", "framing", partial(centre_crop, keep=0.84)),
    Shift("crop 75%", "framing", partial(centre_crop, keep=0.75)),
    Shift("zoom out 85% (black)", "framing", partial(zoom_out, scale=0.85)),
    Shift("shift right 10%", "framing", partial(translate, dx=0.10, dy=0.0)),
    Shift("shift down 10%", "framing", partial(translate, dx=0.0, dy=0.10)),
    Shift("horizontal flip", "orientation", hflip),
    Shift("burned-in text", "markings", burned_in_text),
    Shift("timestamp + label + marker", "markings", timestamp_and_label),
    Shift("large side marker", "markings", partial(side_marker, size=0.14)),
    Shift("black border 8%", "markings", partial(border, width=0.08, value=0.0)),
    Shift("white border 8%", "markings", partial(border, width=0.08, value=1.0)),
    Shift("gamma 0.6", "tone", partial(gamma, exponent=0.6)),
    Shift("gamma 1.6", "tone", partial(gamma, exponent=1.6)),
    Shift("S-curve", "tone", partial(s_curve, strength=8.0)),
    Shift("blur 1.5 px", "sharpness", partial(blur, radius=1.5)),
    Shift("unsharp mask", "sharpness", sharpen),
    Shift("half resolution", "resolution", half_resolution),
    Shift("JPEG quality 20", "resolution", partial(jpeg, quality=20)),
    Shift("noise 8 levels", "noise", partial(noise, sigma=8.0)),
)


def shift_by_name(name: str) -> Shift:
    for shift in SHIFTS:
        if shift.name == name:
            return shift
    raise KeyError(f"no shift named {name!r}; known: {[s.name for s in SHIFTS]}")


def apply_shift(shift: Shift, images: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """``shift`` applied to each image of ``(N, H, W)`` uint8, deterministically."""
    index = SHIFTS.index(shift) if shift in SHIFTS else 0
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = shift.apply(image, np.random.default_rng([seed, index, i]))
    return out


def shifted_sets(images: np.ndarray, shifts: Sequence[Shift] = SHIFTS, *,
                 seed: int = 0) -> Iterator[tuple[Shift, np.ndarray]]:
    """Each shift applied to ``images``, one ``(shift, shifted images)`` pair at a time
    (``list()`` it to score several models on the same copies)."""
    for shift in shifts:
        yield shift, apply_shift(shift, images, seed=seed)
