"""Checks that a heat map comes from the image: what the benchmark and the tests measure.

- **Flip equivariance:** the map of the mirrored film, mirrored back, against the film's own
  map (Pearson r of the evidence before it is clipped and scaled for display, so that a
  film with no positive evidence anywhere still has a map to compare). A map drawn at a
  fixed place whatever the film shows scores near 0.
- **Peak spread:** where the hottest cell sits, over many pneumonia films (standard
  deviation of its position, as a fraction of the side). A fixed blob scores near 0.
- **Deletion:** covering the hottest 10 % of the model input (with the image's mean, as
  the map itself covers) against covering 10 % in random cells: the fall of the calibrated
  pneumonia logit (the raw logit over the card's temperature: the scale the probability is
  read on, so that models trained to narrower or wider raw logits compare), and of the
  calibrated P(pneumonia), which barely moves on films the model is sure of. Evidence that
  the decision rests on lowers it more.
- **Normal films:** the heat shown (on the model-wide scale) on normal films against
  pneumonia films.

Every figure comes through :meth:`pneumoscan.predictor.Predictor.evidence`, the one heat
map the faces show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pneumoscan.calibration import apply_temperature
from pneumoscan.heatmap import scaled_heatmap
from pneumoscan.predictor import Predictor
from pneumoscan.preprocessing import normalize


@dataclass(frozen=True)
class FilmChecks:
    """One film's figures."""

    flip_r: float  # Pearson r, map vs the mirrored film's map mirrored back
    peak_row: float  # hottest cell, as a fraction of the side from the top
    peak_col: float  # ... from the left
    max_heat: float  # the map's maximum on the model-wide scale, in [0, 1]
    mean_heat: float
    drop_hot: float  # fall of the calibrated pneumonia logit, the hottest 10 % covered
    drop_random: float  # ... when a random 10 % (whole cells) is covered
    p_drop_hot: float  # the same falls of the calibrated P(pneumonia)
    p_drop_random: float


def model_input(predictor: Predictor, resized: np.ndarray) -> np.ndarray:
    """The normalised model input ``(1, S, S)`` of one resized uint8 image ``(S, S)``."""
    return normalize(resized[None], predictor.card.preprocessing)[0]


def pneumonia_logits(predictor: Predictor, inputs: np.ndarray) -> np.ndarray:
    """The pneumonia logits ``(B,)`` of normalised inputs ``(B, 1, S, S)``."""
    return np.asarray(predictor.backend.run(inputs.astype(np.float32))[0][:, 0], np.float64)


def pixel_mask(heatmap: np.ndarray, side: int, fraction: float) -> np.ndarray:
    """The ``fraction`` of the ``(side, side)`` input with the most heat (bool)."""
    upsampled = np.asarray(Image.fromarray(heatmap.astype(np.float32), mode="F").resize(
        (side, side), Image.Resampling.BILINEAR))
    cut = np.quantile(upsampled, 1 - fraction)
    return upsampled >= cut


def random_mask(cells: int, side: int, fraction: float,
                rng: np.random.Generator) -> np.ndarray:
    """``fraction`` of the input's cells (a ``cells`` x ``cells`` grid), chosen at random."""
    chosen = np.zeros(cells * cells, bool)
    chosen[rng.choice(cells * cells, size=max(1, round(fraction * cells * cells)),
                      replace=False)] = True
    grid = Image.fromarray(chosen.reshape(cells, cells).astype(np.uint8) * 255)
    return np.asarray(grid.resize((side, side), Image.Resampling.NEAREST)) > 0


def check_film(predictor: Predictor, resized: np.ndarray, rng: np.random.Generator,
               fraction: float = 0.10) -> FilmChecks:
    """The figures of one resized uint8 film ``(S, S)``."""
    image = model_input(predictor, resized)
    raw = predictor.raw_evidence(image)
    heat = scaled_heatmap(raw, predictor.card.heatmap_scale)
    mirrored = predictor.raw_evidence(model_input(predictor, resized[:, ::-1].copy()))[:, ::-1]
    flip_r = float(np.corrcoef(raw.ravel(), mirrored.ravel())[0, 1]) \
        if raw.std() > 0 and mirrored.std() > 0 else 0.0
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    side = image.shape[-1]
    fill = float(image.mean())
    hot = image.copy()
    hot[0, pixel_mask(heat, side, fraction)] = fill
    random = image.copy()
    random[0, random_mask(heat.shape[0], side, fraction, rng)] = fill
    logits = pneumonia_logits(predictor, np.stack([image, hot, random]))
    calibrated = logits / predictor.card.temperature  # the bias cancels in a difference
    p_base, p_hot, p_random = apply_temperature(logits, predictor.card.temperature,
                                                predictor.card.bias)
    return FilmChecks(flip_r, (row + 0.5) / heat.shape[0], (col + 0.5) / heat.shape[1],
                      float(heat.max()), float(heat.mean()),
                      float(calibrated[0] - calibrated[1]), float(calibrated[0] - calibrated[2]),
                      float(p_base - p_hot), float(p_base - p_random))


@dataclass(frozen=True)
class Summary:
    """Figures over a set of films."""

    n: int
    flip_r: float  # mean Pearson r
    peak_spread: float  # std of the peak position (rows and columns pooled), of the side
    max_heat: float  # mean of the maps' maxima
    mean_heat: float
    drop_hot: float  # mean fall of the calibrated pneumonia logit, hottest 10 % covered
    drop_random: float  # ... random 10 % covered
    p_drop_hot: float  # mean fall of P(pneumonia), hottest 10 % covered
    p_drop_random: float


def summarise(films: list[FilmChecks]) -> Summary:
    rows = np.array([f.peak_row for f in films])
    cols = np.array([f.peak_col for f in films])
    return Summary(
        n=len(films),
        flip_r=float(np.mean([f.flip_r for f in films])),
        peak_spread=float(np.sqrt((rows.var() + cols.var()) / 2)),
        max_heat=float(np.mean([f.max_heat for f in films])),
        mean_heat=float(np.mean([f.mean_heat for f in films])),
        drop_hot=float(np.mean([f.drop_hot for f in films])),
        drop_random=float(np.mean([f.drop_random for f in films])),
        p_drop_hot=float(np.mean([f.p_drop_hot for f in films])),
        p_drop_random=float(np.mean([f.p_drop_random for f in films])))
