"""Augmentation for radiographs, applied to a whole batch at once with one generator.

Geometry: small rotations, scale, translation and aspect changes (patients are not
centred the same way; the data was squashed from varied aspect ratios). Intensity:
exposure (brightness), contrast, gamma, blur/sharpness and noise, which is where
radiographs from another machine or centre differ. No horizontal flip by default: the
heart is on the left, and a mirrored chest is not a radiograph a model will meet.

Written here rather than with torchvision transforms because one batched ``affine_grid``
with a single seeded ``torch.Generator`` is both faster on a CPU and makes an epoch's
augmentation a pure function of ``(seed, epoch)``: the basis of exact ``--resume``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from pneumoscan.fitting.markings import random_markings


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; 0 turns one off."""

    rotate_degrees: float = 10.0  # uniform in ±this
    scale: float = 0.15  # zoom factor uniform in 1 ± this
    aspect: float = 0.10  # x/y stretch uniform in 1 ± this
    translate: float = 0.06  # shift uniform in ±this fraction of the side
    brightness: float = 0.15  # additive, in units of the [0, 1] pixel range
    contrast: float = 0.25  # multiplicative about the image mean, 1 ± this
    gamma: float = 0.30  # exponent exp(uniform ±this)
    blur_sharpen: float = 0.5  # mix with a blurred copy, weight uniform in ±this
    blur_sigma: float = 0.0  # Gaussian blur, sigma uniform in [0, this] pixels of the input:
    # a softer or lower-resolution original (in this data, normals are sharper on average)
    noise: float = 0.02  # Gaussian noise std, uniform in [0, this]
    hflip: bool = False
    pad_fill: float = 0.0  # probability that the area a zoom-out or shift uncovers is a
    # constant grey (black, white or between) instead of the replicated edge
    annotate: float = 0.0  # probability of burned-in text and side markers (both classes)
    border: float = 0.0  # probability of black or white bands along the edges
    border_frame: float = 0.0  # share of those bands drawn on all four sides (a frame)
    resample: float = 0.0  # probability of a round trip through a smaller size (50-100 %
    # of the side) with a random filter: another scanner's, or another resize path's, detail
    jpeg: float = 0.0  # probability of JPEG re-encoding at a quality uniform in 30-95


def _uniform(n: int, spread: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2 - 1) * spread


def augment_batch(images: torch.Tensor, config: AugmentConfig,
                  generator: torch.Generator) -> torch.Tensor:
    """Randomly transform a batch of ``(B, 1, S, S)`` images with values in [0, 1]."""
    n = images.shape[0]
    angle = _uniform(n, math.radians(config.rotate_degrees), generator)
    zoom = 1 + _uniform(n, config.scale, generator)
    stretch = 1 + _uniform(n, config.aspect, generator)
    shift = _uniform(2 * n, config.translate * 2, generator).view(n, 2)
    # The grid maps output to input coordinates, so dividing by zoom enlarges the image.
    sx, sy = 1 / (zoom * stretch.sqrt()), 1 / (zoom / stretch.sqrt())
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos * sx, -sin * sy, shift[:, 0]], dim=1),
        torch.stack([sin * sx, cos * sy, shift[:, 1]], dim=1),
    ], dim=1)  # (B, 2, 3)
    if config.hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        theta[flip, 0, :2] *= -1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    if config.pad_fill > 0:
        inside = F.grid_sample(torch.ones_like(images), grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        fill = torch.rand(n, generator=generator).view(n, 1, 1, 1)
        fill = torch.where(fill < 0.6, 0.0, torch.where(fill < 0.8, 1.0, fill))
        use = (torch.rand(n, generator=generator) < config.pad_fill).view(n, 1, 1, 1)
        out = torch.where(use, out * inside + fill * (1 - inside), out)
    if config.annotate > 0 or config.border > 0:
        out = _mark(out, config, generator)

    if config.resample > 0:
        out = _resample(out, config.resample, generator)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = (1 + _uniform(n, config.contrast, generator)).view(n, 1, 1, 1)
    brightness = _uniform(n, config.brightness, generator).view(n, 1, 1, 1)
    out = ((out - mean) * contrast + mean + brightness).clamp(0, 1)
    gamma = torch.exp(_uniform(n, config.gamma, generator)).view(n, 1, 1, 1)
    out = out.clamp_min(1e-6).pow(gamma)
    if config.blur_sharpen > 0:
        blurred = F.avg_pool2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        weight = _uniform(n, config.blur_sharpen, generator).view(n, 1, 1, 1)
        out = out + weight * (blurred - out)  # weight > 0 blurs, < 0 sharpens
    if config.blur_sigma > 0:
        out = gaussian_blur(out, torch.rand(n, generator=generator) * config.blur_sigma)
    if config.noise > 0:
        sigma = (torch.rand(n, generator=generator) * config.noise).view(n, 1, 1, 1)
        out = out + sigma * torch.randn(out.shape, generator=generator)
    out = out.clamp(0, 1)
    if config.jpeg > 0:
        out = _jpeg(out, config.jpeg, generator)
    return out


#: Filters of the resampling round trip (torch.nn.functional.interpolate modes).
RESAMPLE_MODES = ("area", "bilinear", "bicubic", "nearest")


def reencoded(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The same ``(B, 1, S, S)`` images as another path might deliver them: a resampling
    round trip through 70-100 % of the side with random filters, then JPEG (quality 60-95)
    for half of them. The second view of the consistency term (``TrainConfig.consistency``):
    a film and its copy made by another program should get one answer."""
    return _jpeg(_resample(images, 1.0, generator, smallest=0.7), 0.5, generator,
                 qualities=(60, 96))


def _resample(images: torch.Tensor, probability: float, generator: torch.Generator,
              smallest: float = 0.5) -> torch.Tensor:
    """Down to ``smallest``-100 % of the side and back, each image with a random filter
    each way."""
    n, _, height, width = images.shape
    use = torch.rand(n, generator=generator) < probability
    factor = smallest + (1 - smallest) * torch.rand(n, generator=generator)
    modes = torch.randint(0, len(RESAMPLE_MODES), (n, 2), generator=generator)
    out = images.clone()
    for i in torch.nonzero(use).flatten().tolist():
        size = (max(8, round(height * float(factor[i]))), max(8, round(width * float(factor[i]))))
        down, up = (RESAMPLE_MODES[int(m)] for m in modes[i])
        small = _interpolate(images[i:i + 1], size, down)
        out[i:i + 1] = _interpolate(small, (height, width), up)
    return out.clamp(0, 1)


def _interpolate(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode in ("area", "nearest"):
        return F.interpolate(images, size=size, mode=mode)
    return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=True)


def _jpeg(images: torch.Tensor, probability: float, generator: torch.Generator,
          qualities: tuple[int, int] = (30, 96)) -> torch.Tensor:
    """JPEG-encode and decode some images (libjpeg-turbo through simplejpeg), at a quality
    drawn from ``range(*qualities)``."""
    import simplejpeg

    n = images.shape[0]
    use = torch.rand(n, generator=generator) < probability
    quality = torch.randint(*qualities, (n,), generator=generator)
    out = images.clone()
    for i in torch.nonzero(use).flatten().tolist():
        pixels = images[i, 0].mul(255).round().to(torch.uint8).numpy()[:, :, None]  # (H, W, 1)
        encoded = simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=int(quality[i]),
                                         colorspace="GRAY")
        decoded = simplejpeg.decode_jpeg(encoded, colorspace="GRAY")[:, :, 0]
        out[i, 0] = torch.from_numpy(decoded.copy()).float().div_(255)
    return out


def _mark(images: torch.Tensor, config: AugmentConfig,
          generator: torch.Generator) -> torch.Tensor:
    """Burned-in annotations and border bands (:mod:`pneumoscan.fitting.markings`), per image."""
    n = images.shape[0]
    annotate = torch.rand(n, generator=generator) < config.annotate
    border = torch.rand(n, generator=generator) < config.border
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator)
    out = images.clone()
    for i in range(n):
        if annotate[i] or border[i]:
            rng = np.random.default_rng(int(seeds[i]))
            marked = random_markings(images[i, 0].numpy(), rng, annotate=bool(annotate[i]),
                                     border=bool(border[i]), frame=config.border_frame)
            out[i, 0] = torch.from_numpy(marked.astype(np.float32))
    return out


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of ``(B, 1, H, W)`` with its own Gaussian, ``sigma`` ``(B,)`` pixels.

    Separable, as two grouped convolutions (one kernel per image); sigma 0 leaves an image
    unchanged. Edges are replicated.
    """
    n, _, height, width = images.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.clamp_min(1e-3)[:, None].to(images.dtype))
                       ** 2)  # (B, 2r+1)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    x = F.pad(images.reshape(1, n, height, width), (radius, radius, radius, radius),
              mode="replicate")
    x = F.conv2d(x, kernel.view(n, 1, 1, -1), groups=n)  # along rows
    x = F.conv2d(x, kernel.view(n, 1, -1, 1), groups=n)  # along columns
    return x.view(n, 1, height, width)
