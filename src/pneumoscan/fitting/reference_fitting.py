"""The site check's reference: what the model's own validation images look like to it.

``pneumoscan site-check`` compares a site's films with these, at the site, where the
training data is not. Stored beside the weights (``*.reference.safetensors``, through
:func:`pneumoscan.modelfile.write_fitted`, tied to the weights by their SHA-256): for each
patient-level validation image its pooled features and layout thumbnail (float16; the
scope and population checks are recomputed from them with the model's current fits) and
its two logits (float32; the probability follows the card's calibration, a site model's
included), and its label. About 1.9 MB for 651 images.

Written by ``pneumoscan fit-scope`` and at the end of ``pneumoscan train``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pneumoscan.dataset import Sample
from pneumoscan.image_cache import load_resized
from pneumoscan.inference import run_batches
from pneumoscan.predictor import Predictor
from pneumoscan.reference import REFERENCE
from pneumoscan.scope import thumbnail

logger = logging.getLogger(__name__)


def fit_reference(model: Path | str | None, samples: Sequence[Sample], *,
                  cache_dir: Path | None = None) -> Path:
    """Store the site check's reference for ``model``, made of ``samples`` (its
    patient-level validation images); return the file written."""
    from pneumoscan.fitted_state import write_fitted

    predictor = Predictor.load(model)
    config = predictor.card.preprocessing
    resized, bad = load_resized(samples, config.image_size, config.source_size,
                                cache_dir=cache_dir)
    if bad:
        logger.warning("%d unreadable validation image(s) left out of the reference",
                       len(bad))
    kept = [s for i, s in enumerate(samples) if i not in set(bad)]
    logits, pooled = run_batches(lambda batch: _logits_and_pooled(predictor, batch), resized,
                                 predictor.card.preprocessing, batch_size=64)
    thumbnails = np.stack([thumbnail(image) for image in resized])  # (N, T)
    tensors: dict[str, np.ndarray] = {
        "pooled": pooled.astype(np.float16), "thumbnails": thumbnails.astype(np.float16),
        "logits": logits.astype(np.float32),
        "labels": np.array([s.label for s in kept], np.uint8)}
    path = write_fitted(model, REFERENCE, tensors, {"images": "patient-level validation"})
    logger.info("site-check reference of %d validation images written to %s", len(kept), path)
    return path


def _logits_and_pooled(predictor: Predictor, batch: np.ndarray) -> tuple[np.ndarray, ...]:
    logits, _, pooled = predictor.backend.run(batch)  # (B, 2), (B, h, w), (B, C)
    return logits, pooled
