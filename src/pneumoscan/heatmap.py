"""Heat maps that ask the image: occlusion at the decision, and their overlays.

A region's evidence is how much the pneumonia logit falls when that region of the model's
input is covered (Zeiler & Fergus, 2014): windows of a quarter of the side, at 8 x 8
positions symmetric about the centre, are each filled with the image's mean, and the 64
covered copies go through the same forward pass as the prediction (ONNX Runtime or
PyTorch; the backend takes them a few at a time). Each pixel gets the mean fall over the
windows that cover it, read out on a 20 x 20 grid.

Why not the class activation map, ``w · F(x, y)`` of the last feature map: the network
pools its evidence at a fixed place. For the model of November 2026, +23 logit units sat in
one corner cell of its 5 x 5 map on every pneumonia film (+6 on a uniform grey square), so
no last-layer map of it could localise anything (issue 22). Occlusion measures what the
decision depends on, whatever the network does inside; with a flip-averaged model
(:mod:`pneumoscan.models`) the map of a mirrored film is the mirrored map, exactly.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

#: Side of a covering window, as a fraction of the model input's side.
OCCLUSION_WINDOW = 0.25
#: Window positions per axis (from edge to edge, symmetric about the centre).
OCCLUSION_POSITIONS = 8
#: Side of the returned grid of evidence.
MAP_CELLS = 20

#: Logits ``(B, 2)`` of a normalised batch ``(B, 1, S, S)``.
LogitFunction = Callable[[np.ndarray], np.ndarray]

#: Opacity of a heat map drawn over its radiograph, on every face (the page's slider starts
#: here too).
OVERLAY_OPACITY = 0.5


def occlusion_boxes(height: int, width: int, window: float = OCCLUSION_WINDOW,
                    positions: int = OCCLUSION_POSITIONS) -> list[tuple[int, int, int, int]]:
    """The covering windows ``(top, left, bottom, right)``, row by row; the set mirrors onto
    itself left to right."""
    box_h, box_w = max(1, round(height * window)), max(1, round(width * window))
    tops = np.round(np.linspace(0, height - box_h, positions)).astype(int)
    lefts = np.round(np.linspace(0, width - box_w, positions)).astype(int)
    return [(int(t), int(left), int(t) + box_h, int(left) + box_w)
            for t in tops for left in lefts]


def cover(image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Copies ``(K, 1, S, S)`` of a normalised image ``(1, S, S)``, box k of each filled with
    the image's mean."""
    fill = float(image.mean())
    copies = np.repeat(image[None], len(boxes), axis=0)
    for k, (top, left, bottom, right) in enumerate(boxes):
        copies[k, :, top:bottom, left:right] = fill
    return copies


def occlusion_evidence(logits: LogitFunction, image: np.ndarray, *,
                       cells: int = MAP_CELLS) -> np.ndarray:
    """The pneumonia evidence ``(cells, cells)`` float32 of a normalised image ``(1, S, S)``,
    in logit units: the fall of the pneumonia logit when each place is covered (negative
    where covering it makes pneumonia more likely)."""
    _, height, width = image.shape
    boxes = occlusion_boxes(height, width)
    batch = np.concatenate([image[None], cover(image, boxes)]).astype(np.float32)
    outputs = logits(batch)[:, 0]
    fall = outputs[0] - outputs[1:]  # (K,)
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.float64)
    for (top, left, bottom, right), value in zip(boxes, fall, strict=True):
        total[top:bottom, left:right] += value
        count[top:bottom, left:right] += 1
    per_pixel = (total / np.maximum(count, 1)).astype(np.float32)
    return np.asarray(Image.fromarray(per_pixel, mode="F").resize(
        (cells, cells), Image.Resampling.BOX), dtype=np.float32)


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
    base = np.asarray(shrunk.convert("RGB"), dtype=np.float32)
    smooth = _upsample(heatmap, size)
    colour = _palette(greyed)[smooth].astype(np.float32)
    weight = alpha * smooth[..., None].astype(np.float32) / 255.0
    blended = np.clip(base * (1 - weight) + colour * weight, 0, 255).astype(np.uint8)
    return np.concatenate([blended, legend_bar(size[0], greyed)]) if legend else blended


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
