"""Class activation maps (CAM) and their overlays on the original radiograph.

The model's head is global average pooling + one linear layer, so the CAM of the
pneumonia logit, ``sum_c w_c * F_c(x, y)``, is exact (Zhou et al., 2016): the logit is its
spatial mean plus the bias. That is cheaper than Grad-CAM (no backward pass) and works the
same on the ONNX backend, which returns the feature map as a second output.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image


def raw_activation_map(features: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The pneumonia logit's evidence at each position, ``w · F(x, y)``, in logit units.

    ``features`` ``(C, h, w)`` or ``(B, C, h, w)``, ``weight`` the head row ``(C,)``; returns
    ``(h, w)`` or ``(B, h, w)`` float32 (negative where a position speaks against pneumonia).
    """
    return np.tensordot(weight.astype(np.float32), features.astype(np.float32),
                        axes=(0, features.ndim - 3)).astype(np.float32)


def heatmap_scale(raw_maps: np.ndarray, percentile: float = 99.0) -> float:
    """The model-wide heat-map scale: a high percentile of the positive evidence in the
    raw maps ``(B, h, w)`` of validation pneumonia images.

    Shown at full colour from there on, the same for every image, so a normal film whose
    evidence is weak everywhere stays cold instead of being stretched to its own maximum.
    """
    positive = raw_maps[raw_maps > 0]
    return float(np.percentile(positive, percentile)) if positive.size else 0.0


def class_activation_map(features: np.ndarray, weight: np.ndarray,
                         scale: float = 0.0) -> np.ndarray:
    """CAM ``(h, w)`` in [0, 1] from one image's features ``(C, h, w)`` and head row ``(C,)``.

    Negative evidence is clipped to 0. With ``scale`` > 0 (the model card's
    ``heatmap_scale``) the map is divided by it and clipped at 1, one scale for every
    image; with 0 (older models) by the image's own maximum.
    """
    cam = np.maximum(raw_activation_map(features, weight), 0.0)
    peak = scale if scale > 0 else float(cam.max())
    return (np.minimum(cam / peak, 1.0) if peak > 0 else cam).astype(np.float32)


def colorize(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Upsample a [0, 1] heat map to ``size`` (width, height) and colour it: (H, W, 3) uint8."""
    return _jet()[_upsample(heatmap, size)]


def _upsample(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The [0, 1] heat map as uint8 at ``size`` (width, height), bicubic."""
    return np.asarray(Image.fromarray((heatmap * 255).astype(np.uint8)).resize(
        size, Image.Resampling.BICUBIC))


@functools.cache
def _jet() -> np.ndarray:
    """matplotlib's "jet" colour map as a (256, 3) uint8 table (looked up, not recomputed)."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.arange(256))[:, :3] * 255).astype(np.uint8)


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5,
            max_side: int = 1024, legend: bool = True) -> np.ndarray:
    """The radiograph ``(H, W)`` with the heat map blended on top, at its aspect ratio.

    Large images are shrunk so the longer side is at most ``max_side`` pixels. Colour is
    weighted by the heat itself: where there is no evidence the radiograph shows as it is
    (no blue tint). With ``legend`` a colour bar is added below the image.
    """
    height, width = pixels.shape
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    base = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)
                      .convert("RGB"), dtype=np.float32)
    smooth = _upsample(heatmap, size)
    colour = _jet()[smooth].astype(np.float32)
    weight = alpha * smooth[..., None].astype(np.float32) / 255.0
    blended = np.clip(base * (1 - weight) + colour * weight, 0, 255).astype(np.uint8)
    return np.concatenate([blended, legend_bar(size[0])]) if legend else blended


def legend_bar(width: int) -> np.ndarray:
    """A colour bar ``(h, width, 3)`` uint8 for the bottom of an overlay: the colour map
    from no evidence to strong evidence of pneumonia, on the model-wide scale."""
    from PIL import ImageDraw, ImageFont

    height = max(18, width // 14)
    bar = Image.new("RGB", (width, height), (0, 0, 0))
    ramp = _jet()[np.linspace(0, 255, max(1, width // 2)).astype(np.uint8)]  # (w/2, 3)
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


def overlay_png(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> bytes:
    """PNG bytes of :func:`overlay`: the radiograph with its heat map, at its aspect ratio."""
    return encode_png(overlay(pixels, heatmap, alpha=alpha))


def heat_layer(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The heat map alone at ``size`` (width, height): ``(H, W, 4)`` uint8, the colour of
    :func:`colorize` with the heat itself as alpha.

    Drawn over the radiograph at opacity ``a`` it gives :func:`overlay` with ``alpha=a``:
    what the web page's opacity slider does.
    """
    heat = _upsample(heatmap, size)
    return np.dstack([_jet()[heat], heat])
