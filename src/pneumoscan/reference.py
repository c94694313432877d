"""The site check's reference, stored beside a model's weights: its validation images as
the model sees them (made by :mod:`pneumoscan.fitting.reference_fitting`, read by
``pneumoscan site-check``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pneumoscan.fitted_state import FittedKind, load_fitted
from pneumoscan.modelfile import ModelLike

#: The file beside ``NAME.safetensors``: made by ``fit-scope`` and ``train``.
REFERENCE = FittedKind(".reference.safetensors", "pneumoscan.reference/1",
                       "pneumoscan fit-scope {model} --data DATA",
                       "the site check cannot compare")


@dataclass(frozen=True)
class Reference:
    """The model's patient-level validation images, as features and logits."""

    pooled: np.ndarray  # (N, C) float32: the pooled last feature maps
    thumbnails: np.ndarray  # (N, T) float32: the layout thumbnails (pneumoscan.scope)
    logits: np.ndarray  # (N, 2) float32: pneumonia and cause logits
    labels: np.ndarray  # (N,) 0 normal, 1 pneumonia


def load_reference(model: ModelLike) -> Reference | None:
    """The model's reference, or None when it has none for these weights.

    Raises:
        ModelFileError: the file exists but is not a readable reference.
    """
    return load_fitted(model, REFERENCE, lambda tensors, _: Reference(
        pooled=tensors["pooled"].astype(np.float32),
        thumbnails=tensors["thumbnails"].astype(np.float32),
        logits=tensors["logits"].astype(np.float32), labels=tensors["labels"].astype(int)),
        "incomplete site-check reference")
