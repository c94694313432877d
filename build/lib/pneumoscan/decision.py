"""The decision rule: from a model's logits to calibrated probabilities, label and cause.

One rule for the Predictor, ``pneumoscan evaluate`` and the ONNX parity check:

- P(pneumonia) is ``sigmoid(logit 0 / temperature + bias)``, the model card's
  calibration;
- the label is pneumonia when P(pneumonia) reaches the card's threshold (inclusive);
- P(bacterial | pneumonia) is ``sigmoid(logit 1 / cause_temperature)``; the cause is
  bacterial when it reaches :data:`CAUSE_THRESHOLD`, and is reported only for pneumonia.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np

from pneumoscan.calibration import apply_temperature

if TYPE_CHECKING:
    from pneumoscan.modelfile import ModelCard

#: P(bacterial | pneumonia) at or above which the cause is bacterial.
CAUSE_THRESHOLD = 0.5


@overload
def is_positive(probability: float, threshold: float) -> bool: ...
@overload
def is_positive(probability: np.ndarray, threshold: float) -> np.ndarray: ...
def is_positive(probability: np.ndarray | float, threshold: float) -> np.ndarray | bool:
    """The label rule: pneumonia when the calibrated probability reaches the threshold."""
    return probability >= threshold


@dataclass(frozen=True)
class Decisions:
    """A batch's decisions; every field is ``(B,)``."""

    probability: np.ndarray  # calibrated P(pneumonia), float64
    cause_probability: np.ndarray  # calibrated P(bacterial | pneumonia), float64
    positive: np.ndarray  # bool: the label is pneumonia (class index 1)
    bacterial: np.ndarray  # bool: cause_probability >= CAUSE_THRESHOLD (cause index 1)

    @property
    def label_index(self) -> np.ndarray:
        """Index into the card's ``class_names``: 0 normal, 1 pneumonia."""
        return self.positive.astype(int)

    @property
    def cause_index(self) -> np.ndarray:
        """Index into the card's ``cause_names`` (0 viral, 1 bacterial); -1 when the label
        is normal, where no cause is reported."""
        return np.where(self.positive, self.bacterial.astype(int), -1)


def decide(logits: np.ndarray, card: ModelCard) -> Decisions:
    """Apply the model card's calibration, threshold and cause rule to logits ``(B, 2)``."""
    probabilities = apply_temperature(logits, np.array([card.temperature,
                                                        card.cause_temperature]),
                                      np.array([card.bias, 0.0]))  # (B, 2)
    probability, cause_probability = probabilities[:, 0], probabilities[:, 1]
    return Decisions(probability=probability, cause_probability=cause_probability,
                     positive=is_positive(probability, card.threshold),
                     bacterial=cause_probability >= CAUSE_THRESHOLD)
