"""The site check's reference, stored beside a model's weights: its validation images as
the model sees them (made by :mod:`pneumoscan.fitting.reference_fitting`, read by
``pneumoscan site-check``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumoscan.errors import ModelFileError
from pneumoscan.modelfile import default_model_path, read_fitted

#: Suffix of the file beside ``NAME.safetensors``, and its format's name.
SUFFIX = ".reference.safetensors"
FORMAT = "pneumoscan.reference/1"


@dataclass(frozen=True)
class Reference:
    """The model's patient-level validation images, as features and logits."""

    pooled: np.ndarray  # (N, C) float32: the pooled last feature maps
    thumbnails: np.ndarray  # (N, T) float32: the layout thumbnails (pneumoscan.scope)
    logits: np.ndarray  # (N, 2) float32: pneumonia and cause logits
    labels: np.ndarray  # (N,) 0 normal, 1 pneumonia


def fit_reference_hint(model: Path | str | None) -> str:
    """The command that (re)makes a model's reference."""
    target = default_model_path() if model is None else model
    return f"pneumoscan fit-scope {target} --data DATA"


def load_reference(model: Path | str | None) -> Reference | None:
    """The model's reference, or None when it has none for these weights.

    Raises:
        ModelFileError: the file exists but is not a readable reference.
    """
    hint = fit_reference_hint(model)
    stored = read_fitted(model, SUFFIX, FORMAT, hint, "the site check cannot compare")
    if stored is None:
        return None
    tensors, _ = stored
    try:
        return Reference(pooled=tensors["pooled"].astype(np.float32),
                         thumbnails=tensors["thumbnails"].astype(np.float32),
                         logits=tensors["logits"].astype(np.float32),
                         labels=tensors["labels"].astype(int))
    except KeyError as exc:
        raise ModelFileError(f"incomplete site-check reference ({exc}); make it again: "
                             f"{hint}") from exc
