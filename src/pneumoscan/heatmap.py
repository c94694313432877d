"""Heat maps: the network's own evidence, and their overlays.

The pneumonia logit of every model here is the head's bias plus the mean, over the cells
of the last feature map, of each cell's share ``w · F(x, y)``
(:meth:`~pneumoscan.models.PneumoniaNet.forward_with_evidence`). That map of shares is the
heat map: it comes with every forward pass (no extra cost), and it adds up to the decision
exactly. With a flip-averaged model it is the mean of the film's map and its mirror's
mirrored back, so the map of a mirrored film is the mirrored map.

Whether the shares sit where the image shows something is a property of the network, and
is measured (:mod:`pneumoscan.reports.heatmap_checks`: flip equivariance, peak spread,
deletion, normals). The whole EfficientNet-Lite0 of November 2026 put +23 logit units in
one corner cell of its 5 x 5 map on every pneumonia film; it was explained by occlusion
(64 covered copies per map) until the shipped network, Lite0 cut at stride 16, kept its
evidence local on a 10 x 10 grid (issue 22, docs/experiments.md).
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageOps

#: Opacity of a heat map drawn over its radiograph, on every face (the page's slider starts
#: here too).
OVERLAY_OPACITY = 0.5


def heatmap_scale(raw_maps: np.ndarray, percentile: float = 99.0) -> float:
    """The model-wide heat-map scale: a high percentile of the positive evidence in the
    raw maps ``(B, h, w)`` of validation pneumonia images.

    Shown at full colour from there on, the same for every image, so a normal film whose
    evidence is weak everywhere stays cold instead of being stretched to its own maximum.
    """
    positive = raw_maps[raw_maps > 0]
    return float(np.percentile(positive, percentile)) if positive.size else 0.0


def scaled_heatmap(evidence: np.ndarray, scale: float = 0.0) -> np.ndarray:
    """The heat map ``(h, w)`` in [0, 1] of raw evidence: negative evidence clipped to 0,
    divided by the model card's ``heatmap_scale`` and clipped at 1 (one scale for every
    image); with ``scale`` 0 (older models) by the image's own maximum."""
    positive = np.maximum(evidence, 0.0)
    peak = scale if scale > 0 else float(positive.max())
    return (np.minimum(positive / peak, 1.0) if peak > 0 else positive).astype(np.float32)


def _upsample(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The [0, 1] heat map as uint8 at ``size`` (width, height), bicubic."""
    return np.asarray(Image.fromarray((heatmap * 255).astype(np.uint8)).resize(
        size, Image.Resampling.BICUBIC))


@functools.cache
def _jet() -> np.ndarray:
    """matplotlib's "jet" colour map as a (256, 3) uint8 table (looked up, not recomputed)."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.arange(256))[:, :3] * 255).astype(np.uint8)


@functools.cache
def _grey() -> np.ndarray:
    """The greyed palette of a result that does not apply: a narrow mid-grey ramp, so the
    map shows where the model looked without reading as a coloured finding."""
    ramp = np.linspace(96, 160, 256).astype(np.uint8)
    return np.repeat(ramp[:, None], 3, axis=1)


def _palette(greyed: bool) -> np.ndarray:
    return _grey() if greyed else _jet()


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_OPACITY,
            max_side: int = 1024, legend: bool = True, greyed: bool = False) -> np.ndarray:
    """The radiograph ``(H, W)`` with the heat map blended on top, at its aspect ratio.

    Large images are shrunk so the longer side is at most ``max_side`` pixels. Colour is
    weighted by the heat itself: where there is no evidence the radiograph shows as it is
    (no blue tint). With ``legend`` a colour bar is added below the image. ``greyed``: in
    grey, for a result that does not apply (:mod:`pneumoscan.result_meaning`).
    """
    shrunk = shrink_to_fit(Image.fromarray(pixels), max_side)
    size = shrunk.size
    grey = np.asarray(shrunk.convert("L"))
    smooth = _upsample(heatmap, size)
    # A pixel's colour depends on its grey level and its heat only: look it up.
    blended = np.take(_blend_table(alpha, greyed), grey.astype(np.intp) << 8 | smooth, axis=0)
    return np.concatenate([blended, legend_bar(size[0], greyed)]) if legend else blended


@functools.lru_cache(maxsize=4)
def _blend_table(alpha: float, greyed: bool) -> np.ndarray:
    """The blend of every grey level with every heat level, ``(256 * 256, 3)`` uint8, row
    ``grey << 8 | heat``: the radiograph's grey under the palette's colour at opacity
    ``alpha * heat / 255``, so that no evidence leaves the radiograph as it is.

    One lookup per pixel instead of the blend's float arithmetic over the whole image
    (1,024 px: 29 -> 3 ms), with the same float32 operations, so the same bytes
    (tests/test_heatmap.py).
    """
    levels = np.arange(256, dtype=np.float32)
    base = levels[:, None, None]  # the grey level, down the rows
    colour = _palette(greyed).astype(np.float32)[None]  # the heat level, across
    weight = alpha * levels[None, :, None] / 255.0
    table = np.clip(base * (1 - weight) + colour * weight, 0, 255).astype(np.uint8)
    return table.reshape(256 * 256, 3)


def shrink_to_fit(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` shrunk (bilinear, aspect ratio kept) so that its longer side is at most
    ``max_side`` pixels; a smaller image as it is (never enlarged)."""
    if max(image.size) <= max_side:
        return image
    return ImageOps.contain(image, (max_side, max_side), Image.Resampling.BILINEAR)


def legend_bar(width: int, greyed: bool = False) -> np.ndarray:
    """A colour bar ``(h, width, 3)`` uint8 for the bottom of an overlay: the colour map
    from no evidence to strong evidence of pneumonia, on the model-wide scale (greyed for a result
    that does not apply)."""
    from PIL import ImageDraw, ImageFont

    height = max(18, width // 14)
    bar = Image.new("RGB", (width, height), (0, 0, 0))
    ramp = _palette(greyed)[np.linspace(0, 255, max(1, width // 2)).astype(np.uint8)]
    strip = np.repeat(ramp[None], height // 2, axis=0)
    left = (width - strip.shape[1]) // 2
    bar.paste(Image.fromarray(strip), (left, height // 4))
    draw = ImageDraw.Draw(bar)
    font = ImageFont.load_default(size=max(8, height // 2))
    draw.text((left - 4, height // 2), "none", fill=(255, 255, 255), font=font, anchor="rm")
    draw.text((left + strip.shape[1] + 4, height // 2), "strong", fill=(255, 255, 255),
              font=font, anchor="lm")
    return np.asarray(bar)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 image.

    zlib level 1: a 224 px overlay encodes in about a third of the default level's time
    (6) for a file about 12 % larger; the web page and the API send these on every request
    that asks for a heat map.
    """
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def heat_layer(heatmap: np.ndarray, size: tuple[int, int], greyed: bool = False,
               ) -> np.ndarray:
    """The heat map alone at ``size`` (width, height): ``(H, W, 4)`` uint8, the colour of
    :func:`overlay` (grey when ``greyed``) with the heat itself as alpha.

    Drawn over the radiograph at opacity ``a`` it gives :func:`overlay` with ``alpha=a``:
    what the web page's opacity slider does.
    """
    heat = _upsample(heatmap, size)
    return np.dstack([_palette(greyed)[heat], heat])
