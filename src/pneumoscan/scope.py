"""Input-scope check: is this plausibly a frontal chest radiograph the model can judge?

A result on a photograph, a document or a CT slice would be meaningless, so every result
carries ``in_scope`` and a reason. Checks, cheapest first: DICOM modality and body part,
colour, size, near-uniform pixels, then (when the model card holds training statistics)
the distance of the image's pooled features from the training distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pneumoscan.imaging import DecodedImage

#: Smallest side accepted: below this there is too little anatomy to judge.
MIN_SIDE = 64
#: DICOM modalities that produce projection radiographs.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT", ""})


@dataclass(frozen=True)
class ScopeResult:
    """Whether an input is in the model's scope, and why not when it isn't."""

    in_scope: bool
    reason: str  # "" when in scope


def check_image(decoded: DecodedImage) -> ScopeResult:
    """Checks that need only the decoded image and its DICOM header."""
    pixels = decoded.pixels
    if decoded.dicom is not None:
        modality = decoded.dicom.modality.upper()
        if modality not in RADIOGRAPH_MODALITIES:
            return ScopeResult(False, f"DICOM modality {modality} is not a radiograph")
        body = decoded.dicom.body_part.upper()
        if body and body not in {"CHEST", "THORAX", "LUNG", "PORT CHEST"}:
            return ScopeResult(False, f"DICOM body part {body} is not the chest")
    if decoded.was_color:
        return ScopeResult(False, "colour image: radiographs are grayscale")
    height, width = pixels.shape
    if min(height, width) < MIN_SIDE:
        return ScopeResult(False, f"image too small ({width}x{height}); need >= {MIN_SIDE} px")
    if float(pixels.std()) < 12.0:
        return ScopeResult(False, "near-uniform image: no anatomy visible")
    return ScopeResult(True, "")


def check_features(pooled: np.ndarray, statistics: dict[str, Any]) -> ScopeResult:
    """Compare pooled features ``(C,)`` with the training distribution in ``statistics``.

    ``statistics`` (from the model card) holds ``mean`` ``(C,)``, ``components`` ``(k, C)``
    and ``variances`` ``(k,)`` of a PCA of training features, and ``max_distance``, the
    cut-off on the Mahalanobis distance in that subspace plus the residual norm.
    """
    if not statistics:
        return ScopeResult(True, "")
    mean = np.asarray(statistics["mean"], dtype=np.float32)
    components = np.asarray(statistics["components"], dtype=np.float32)
    variances = np.asarray(statistics["variances"], dtype=np.float32)
    centred = pooled.astype(np.float32) - mean
    projected = components @ centred
    residual = centred - components.T @ projected
    distance = float(np.sqrt(np.sum(projected**2 / variances) +
                             np.sum(residual**2) / float(statistics["residual_variance"])))
    if distance > float(statistics["max_distance"]):
        return ScopeResult(False, "unlike the training radiographs (feature distance "
                                  f"{distance:.1f} > {float(statistics['max_distance']):.1f})")
    return ScopeResult(True, "")
