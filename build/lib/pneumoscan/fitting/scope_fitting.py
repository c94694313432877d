"""Fitting a model's input-scope statistics on its own training images.

The last step of ``pneumoscan train`` and the whole of ``pneumoscan fit-scope`` (for a
model made before, or whose statistics are missing or stale). The statistics
(:class:`pneumoscan.scope.ScopeStatistics`) are fitted on the training side of the model's
split, rebuilt from the config in its card, so its validation images stay unseen and
``benchmarks/scope_rates.py`` can measure the false-flag rate on them. They are stored
beside the weights (:func:`pneumoscan.modelfile.save_scope`).

They are fitted on the training images plus one randomly transformed copy of each, with a
wider zoom than training uses: real radiographs vary more than one centre's (adult chests
are collimated tighter than these children's, which show arms and neck), and a scope check
that flags every adult radiograph would be worse than none.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pneumoscan.dataset import Sample
from pneumoscan.fitting.augmentation import AugmentConfig, augment_batch
from pneumoscan.image_cache import load_resized
from pneumoscan.modelfile import drop_card_scope, save_scope
from pneumoscan.predictor import Predictor
from pneumoscan.scope import (
    FEATURE_MARGIN,
    TRAINING_EXCEED_FRACTION,
    ScopeStatistics,
    fit_scope_statistics,
    thumbnail,
)

logger = logging.getLogger(__name__)

#: The random changes of the fitting copies: training's default ranges, spelled out so a
#: change of training's defaults does not move the scope fit, with a wider zoom and shift.
SCOPE_AUGMENT = AugmentConfig(rotate_degrees=10.0, scale=0.3, aspect=0.15, translate=0.08,
                              brightness=0.15, contrast=0.25, gamma=0.3, blur_sharpen=0.5,
                              blur_sigma=0.0, noise=0.02, hflip=False, pad_fill=0.0,
                              annotate=0.0, border=0.0)


def augmented_copies(resized: np.ndarray, seed: int = 0,
                     config: AugmentConfig = SCOPE_AUGMENT) -> np.ndarray:
    """One copy ``(N, S, S)`` uint8 of each image, transformed by ``config``."""
    generator = torch.Generator().manual_seed(seed)
    copies = []
    for start in range(0, len(resized), 256):
        batch = torch.from_numpy(resized[start:start + 256]).float().div_(255).unsqueeze(1)
        batch = augment_batch(batch, config, generator)  # (B, 1, S, S) in [0, 1]
        copies.append(batch[:, 0].mul(255).round_().to(torch.uint8).numpy())
    return np.concatenate(copies) if copies else resized[:0]


def fit_scope(model: Path | str | None, samples: Sequence[Sample], *,
              cache_dir: Path | None = None,
              exceed_fraction: float = TRAINING_EXCEED_FRACTION,
              feature_margin: float = FEATURE_MARGIN) -> tuple[ScopeStatistics, Path]:
    """Fit the scope statistics of ``model`` on ``samples`` and store them beside its
    weights (removing any its card held inside, the old layout); return them and the file.

    Args:
        model: a model folder or ``.safetensors`` file (None: the shipped model).
        samples: its training images (:func:`training_split`'s ``train``).
        cache_dir: the decoded-image cache (default: ``~/.cache/pneumoscan``).
        exceed_fraction: share of the fitting images allowed beyond the cut-offs.
        feature_margin: the feature cut-off over its training quantile.
    """
    predictor = Predictor.load(model, backend="torch")  # the features the check will see
    resized, bad = load_resized(samples, predictor.card.preprocessing.image_size,
                                cache_dir=cache_dir)
    if bad:
        logger.warning("%d unreadable training image(s) left out of the scope fit", len(bad))
    images = np.concatenate([resized, augmented_copies(resized)])  # (2N, S, S)
    logger.info("fitting the scope check on %d images (training + augmented copies)",
                len(images))
    features = predictor.pooled_features(images)  # (2N, C)
    thumbnails = np.stack([thumbnail(image) for image in images])  # (2N, T)
    statistics = fit_scope_statistics(features, thumbnails, exceed_fraction=exceed_fraction,
                                      feature_margin=feature_margin)
    path = save_scope(statistics, model)
    if drop_card_scope(model):
        logger.info("removed the scope statistics of the old layout from the model card")
    return statistics, path


def describe_scope(statistics: ScopeStatistics) -> str:
    """One line: what the statistics were fitted on and their cut-offs."""
    features, layout = statistics.features, statistics.layout
    return (f"fitted on {features.n_images} images (training + augmented copies): features "
            f"{features.n_components} components, cut-off {features.max_distance:.2f} "
            f"({features.margin:g} x the training quantile); layout "
            f"{layout.n_components} components, cut-off {layout.max_distance:.2f}")
