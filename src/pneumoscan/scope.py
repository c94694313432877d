"""Input-scope check: is this plausibly a frontal chest radiograph the model can judge?

A result on a photograph, a document or a CT slice would be meaningless, so every result
carries ``in_scope`` and a reason. Checks, cheapest first:

1. DICOM header: modality (CT, MR, US... are not radiographs), body part, lateral view;
2. image statistics: colour, size, aspect ratio, near-uniform pixels, too few grey levels
   (drawings, documents, binary masks), mostly white (documents);
3. when the model card holds training statistics (``card.scope``, fitted by
   :func:`fit_scope_statistics`): the distance of the image's pooled features from the
   training images' features, as a Mahalanobis distance in a PCA subspace plus the
   residual outside it.

The thresholds of 2. sit far outside what the 5,216 training radiographs show (noted
beside each), so they flag only what is plainly not a radiograph; 3. catches the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pneumoscan.imaging import DecodedImage

#: Smallest side accepted: below this there is too little anatomy to judge.
MIN_SIDE = 64
#: Longest side over shortest side; chest radiographs are near square (0.7 to 1.4).
MAX_ASPECT = 2.5
#: Pixel standard deviation below which an image is near-uniform (training minimum: 19.9).
MIN_STD = 12.0
#: Fewest distinct grey levels (training minimum: 113 of 256).
MIN_GREY_LEVELS = 32
#: Largest share of pixels at 245 or brighter (training maximum: 0.12); documents are white.
MAX_WHITE_FRACTION = 0.4
#: DICOM modalities that produce projection radiographs ("OT"/"SC": digitised film).
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT", "SC", ""})
#: DICOM body parts accepted ("" is common: many chest files leave it empty).
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "PORT CHEST", "CHEST_PA",
                              "CHEST_AP", "RIB", "RIBS", ""})
#: DICOM view positions that are not frontal.
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"})
#: Default share of training images allowed beyond the fitted feature-distance cut-off.
TRAINING_EXCEED_FRACTION = 0.005


@dataclass(frozen=True)
class ScopeResult:
    """Whether an input is in the model's scope, and why not when it isn't."""

    in_scope: bool
    reason: str  # "" when in scope


IN_SCOPE = ScopeResult(True, "")


def check_dicom_header(decoded: DecodedImage) -> ScopeResult:
    """Modality, body part and view from the DICOM header (in scope when not a DICOM)."""
    if decoded.dicom is None:
        return IN_SCOPE
    modality = decoded.dicom.modality.strip().upper()
    if modality not in RADIOGRAPH_MODALITIES:
        return ScopeResult(False, f"DICOM modality {modality} is not a projection radiograph")
    body = decoded.dicom.body_part.strip().upper()
    if body not in CHEST_BODY_PARTS:
        return ScopeResult(False, f"DICOM body part {body} is not the chest")
    view = decoded.dicom.view_position.strip().upper()
    if view in LATERAL_VIEWS:
        return ScopeResult(False, f"DICOM view {view} is lateral; the model reads frontal "
                                  "(PA or AP) views")
    return IN_SCOPE


def check_image(decoded: DecodedImage) -> ScopeResult:
    """Checks that need only the decoded image and its DICOM header."""
    header = check_dicom_header(decoded)
    if not header.in_scope:
        return header
    if decoded.was_color:
        return ScopeResult(False, "colour image: radiographs are grayscale")
    pixels = decoded.pixels
    height, width = pixels.shape
    if min(height, width) < MIN_SIDE:
        return ScopeResult(False, f"image too small ({width}x{height}); need >= {MIN_SIDE} px")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        return ScopeResult(False, f"aspect ratio {width}x{height} is not that of a chest "
                                  "radiograph")
    sample = _subsample(pixels)
    if float(sample.std()) < MIN_STD:
        return ScopeResult(False, "near-uniform image: no anatomy visible")
    levels = int(np.count_nonzero(np.bincount(sample.ravel(), minlength=256)))
    if levels < MIN_GREY_LEVELS:
        return ScopeResult(False, f"only {levels} grey levels: a drawing, document or mask, "
                                  "not a radiograph")
    if float(np.mean(sample >= 245)) > MAX_WHITE_FRACTION:
        return ScopeResult(False, "mostly white: looks like a document, not a radiograph")
    return IN_SCOPE


def _subsample(pixels: np.ndarray, side: int = 512) -> np.ndarray:
    """Every n-th pixel so statistics cost the same on a 4,000 px and a 512 px image."""
    step = max(1, max(pixels.shape) // side)
    return pixels[::step, ::step]


def feature_distance(pooled: np.ndarray, statistics: dict[str, Any]) -> float:
    """Distance of pooled features ``(C,)`` from the training features in ``statistics``.

    ``sqrt(sum_k p_k**2 / var_k + |r|**2 / residual_variance)``: the Mahalanobis distance
    of the projection ``p`` on the training PCA components, plus the squared norm of the
    residual ``r`` outside them, scaled by its training mean.
    """
    mean = np.asarray(statistics["mean"], dtype=np.float64)
    components = np.asarray(statistics["components"], dtype=np.float64)  # (k, C)
    variances = np.asarray(statistics["variances"], dtype=np.float64)  # (k,)
    centred = pooled.astype(np.float64) - mean
    projected = components @ centred
    residual = centred - components.T @ projected
    return float(np.sqrt(np.sum(projected**2 / variances)
                         + np.sum(residual**2) / float(statistics["residual_variance"])))


def check_features(pooled: np.ndarray, statistics: dict[str, Any]) -> ScopeResult:
    """Compare pooled features ``(C,)`` with the training distribution in ``statistics``.

    ``statistics`` (``card.scope``, from :func:`fit_scope_statistics`) holds ``mean``
    ``(C,)``, ``components`` ``(k, C)``, ``variances`` ``(k,)``, ``residual_variance`` and
    ``max_distance``, the cut-off. Empty statistics (an unfitted model) pass everything.
    """
    if not statistics:
        return IN_SCOPE
    if len(statistics["mean"]) != pooled.shape[-1]:
        raise ValueError(f"scope statistics have {len(statistics['mean'])} features, the "
                         f"model {pooled.shape[-1]}; refit them with benchmarks/fit_scope.py")
    distance = feature_distance(pooled, statistics)
    limit = float(statistics["max_distance"])
    if distance > limit:
        return ScopeResult(False, "unlike the training radiographs (feature distance "
                                  f"{distance:.1f} > {limit:.1f})")
    return IN_SCOPE


def assess_scope(decoded: DecodedImage, pooled: np.ndarray,
                 statistics: dict[str, Any]) -> ScopeResult:
    """All checks: header and image statistics first, then the feature distance."""
    result = check_image(decoded)
    return check_features(pooled, statistics) if result.in_scope else result


def fit_scope_statistics(pooled_features: np.ndarray, *, max_components: int = 32,
                         explained: float = 0.95,
                         exceed_fraction: float = TRAINING_EXCEED_FRACTION,
                         ) -> dict[str, Any]:
    """Fit the feature-distance statistics on the training images' pooled features.

    Args:
        pooled_features: ``(N, C)`` globally pooled last feature maps of training images.
        max_components: most PCA components kept.
        explained: keep the fewest components explaining this share of the variance.
        exceed_fraction: the cut-off ``max_distance`` is the ``1 - exceed_fraction``
            quantile of the training images' own distances, so about that share of them
            would be flagged.

    Returns:
        The ``scope`` entry of a model card: ``mean``, ``components``, ``variances``,
        ``residual_variance``, ``max_distance`` and how they were fitted (``n_images``,
        ``n_components``, ``exceed_fraction``).
    """
    features = np.asarray(pooled_features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 10:
        raise ValueError(f"need (N >= 10, C) pooled features, got shape {features.shape}")
    mean = features.mean(axis=0)
    centred = features - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2 / (len(features) - 1)
    share = np.cumsum(variance) / max(float(variance.sum()), 1e-12)
    k = int(min(max_components, np.searchsorted(share, explained) + 1, len(variance) - 1))
    components, variances = vt[:k], np.maximum(variance[:k], 1e-12)
    residual = centred - (centred @ components.T) @ components
    # Scaled so the residual term weighs like one more Mahalanobis dimension per component:
    # its training mean equals k, that of the projected part.
    residual_variance = max(float(np.mean(np.sum(residual**2, axis=1))) / k, 1e-12)
    statistics: dict[str, Any] = {
        "mean": _rounded(mean), "components": [_rounded(c) for c in components],
        "variances": _rounded(variances), "residual_variance": residual_variance,
    }
    distances = np.array([feature_distance(f, statistics) for f in features])
    statistics.update(
        max_distance=float(np.quantile(distances, 1.0 - exceed_fraction)),
        n_images=len(features), n_components=k, exceed_fraction=exceed_fraction,
    )
    return statistics


def _rounded(values: np.ndarray) -> list[float]:
    """Six significant digits: plenty for a distance, and a model.json a third the size."""
    return [float(f"{v:.6g}") for v in values]
