"""Input-scope check: is this plausibly a frontal chest radiograph the model can judge?

A result on a photograph, a document or a CT slice would be meaningless, so every result
carries ``in_scope`` and a reason a person can read. Checks, cheapest first:

1. DICOM header: modality (CT, MR, US... are not radiographs), body part, lateral view;
2. image statistics: colour, size, aspect ratio, near-uniform pixels, too few grey levels
   (drawings, documents, binary masks), mostly white (documents), mostly black (the
   surround of CT / MR slices and ultrasound sectors);
3. two distances to the model's training images (:class:`ScopeStatistics`, part of the
   model: fitted by ``pneumoscan train`` and ``pneumoscan fit-scope``, stored beside the
   weights), each a Mahalanobis distance in a PCA subspace plus the residual outside it:
   of the image's layout (a 24 x 24 equalised thumbnail: where the dark lungs and bright
   mediastinum are, model-independent) and of the model's pooled features (how the model
   itself sees the image). A model without them answers "not fitted", never "in scope".

The thresholds of 2. sit far outside what the 5,216 training radiographs show (noted
beside each), so they flag only what is plainly not a radiograph; 3. catches the rest.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from pneumoscan.imaging import MIN_SIDE, DecodedImage, DicomInfo
from pneumoscan.preprocessing import equalization_lut, resize

#: Longest side over shortest side; chest radiographs are near square (0.7 to 1.4).
MAX_ASPECT = 2.5
#: Pixel standard deviation below which an image is near-uniform (training minimum: 19.9).
MIN_STD = 12.0
#: Fewest distinct grey levels (training minimum: 113 of 256).
MIN_GREY_LEVELS = 32
#: Largest share of pixels at 245 or brighter (training maximum: 0.12); documents are white.
MAX_WHITE_FRACTION = 0.4
#: Largest share of pixels at 25 or darker (training maximum: 0.38); the black surround of
#: CT and MR slices and ultrasound sectors covers more.
MAX_BLACK_FRACTION = 0.55
#: DICOM modalities that produce projection radiographs ("OT"/"SC": digitised film).
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT", "SC", ""})
#: DICOM body parts accepted ("" is common: many chest files leave it empty).
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "PORT CHEST", "CHEST_PA",
                              "CHEST_AP", "RIB", "RIBS", ""})
#: DICOM view positions that are not frontal.
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"})
#: Default share of training images allowed beyond the fitted distance cut-offs.
TRAINING_EXCEED_FRACTION = 0.005
#: Headroom of the feature cut-off over its training quantile. One centre's pediatric
#: radiographs are a narrow sample of chest radiographs: with the shipped model, the
#: features of an adult radiograph (the shared NEMA CR) lie at 1.06-1.09 times the
#: quantile. The layout check catches what is plainly not a radiograph; what only the
#: features caught in benchmarks/scope_rates.py (a chest CT slice) lies at 1.25 times.
#: A judgement call on few adult images: refit and re-measure with each new model.
FEATURE_MARGIN = 1.2
#: The 256 grey values, for statistics taken from a histogram.
GREY_LEVELS = np.arange(256, dtype=np.float64)
#: Rows whose product with a 256-bin histogram gives the pixel count, the sum of values,
#: the sum of squares, the count at 245 or brighter and the count at 25 or darker.
HISTOGRAM_SUMS = np.stack([np.ones(256), GREY_LEVELS, GREY_LEVELS**2,
                           GREY_LEVELS >= 245, GREY_LEVELS <= 25]).astype(np.float64)
#: Side of the layout thumbnail, pixels, and the PCA components kept for it.
THUMBNAIL_SIDE = 24
THUMBNAIL_COMPONENTS = 16


#: The reasons of the distance checks, and of a model that has no statistics.
LAYOUT_REASON = "does not look like a frontal chest radiograph"
FEATURE_REASON = "unlike the chest radiographs this model was trained on"
NOT_FITTED_REASON = "scope check not fitted for this model"


@dataclass(frozen=True)
class ScopeResult:
    """Whether an input is in the model's scope, and why not when it isn't."""

    in_scope: bool
    reason: str  # "" when in scope; else a sentence for a person, without numbers
    # The distance to the training images in units of its cut-off (above 1: out of scope),
    # the larger of the layout's and the features'; None when no distance was measured.
    distance: float | None = None


IN_SCOPE = ScopeResult(True, "")
NOT_FITTED = ScopeResult(False, NOT_FITTED_REASON)


def check_dicom_header(info: DicomInfo | None) -> ScopeResult:
    """Modality, body part and view from the DICOM header facts ``info`` (in scope when
    there are none: not a DICOM)."""
    if info is None:
        return IN_SCOPE
    modality = info.modality.strip().upper()
    if modality not in RADIOGRAPH_MODALITIES:
        return ScopeResult(False, f"DICOM modality {_quoted(modality)} is not a projection "
                                  "radiograph")
    body = info.body_part.strip().upper()
    if body not in CHEST_BODY_PARTS:
        return ScopeResult(False, f"DICOM body part {_quoted(body)} is not the chest")
    view = info.view_position.strip().upper()
    if view in LATERAL_VIEWS:
        return ScopeResult(False, f"DICOM view {view} is lateral; the model reads frontal "
                                  "(PA or AP) views")
    return IN_SCOPE


def _quoted(value: str) -> str:
    """A header code fit to show: a DICOM code string (``CS``: at most 16 capitals, digits,
    spaces, underscores), else a placeholder, so a malformed header cannot smuggle free
    text (possibly patient data) into a result."""
    return value if re.fullmatch(r"[A-Z0-9 _]{1,16}", value) else "(not a valid code)"


def check_image(decoded: DecodedImage) -> ScopeResult:
    """Checks that need only the decoded image and its DICOM header."""
    header = check_dicom_header(decoded.dicom)
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
    # Every statistic below comes from one histogram of a subsample and one product of it
    # (cheaper than a pass over the pixels per statistic).
    histogram = np.bincount(_subsample(pixels).ravel(), minlength=256)
    count, total, squares, white, black = (HISTOGRAM_SUMS @ histogram).tolist()
    mean = total / count
    if math.sqrt(max(squares / count - mean * mean, 0.0)) < MIN_STD:
        return ScopeResult(False, "near-uniform image: no anatomy visible")
    levels = int(np.count_nonzero(histogram))
    if levels < MIN_GREY_LEVELS:
        return ScopeResult(False, f"only {levels} grey levels: a drawing, document or mask, "
                                  "not a radiograph")
    if white / count > MAX_WHITE_FRACTION:
        return ScopeResult(False, "mostly white: looks like a document, not a radiograph")
    if black / count > MAX_BLACK_FRACTION:
        return ScopeResult(False, "mostly black: looks like a CT or MR slice or an "
                                  "ultrasound, not a radiograph")
    return IN_SCOPE


def _subsample(pixels: np.ndarray, side: int = 512) -> np.ndarray:
    """Every n-th pixel so statistics cost the same on a 4,000 px and a 512 px image."""
    step = max(1, max(pixels.shape) // side)
    return pixels[::step, ::step]


def thumbnail(resized: np.ndarray) -> np.ndarray:
    """The image's layout: ``(THUMBNAIL_SIDE**2,)`` floats in [0, 1], histogram-equalised.

    Taken from the model input ``(S, S)`` uint8 (the squashed image), so it sees what the
    model sees; equalisation makes it blind to exposure and contrast, which vary between
    machines, and leaves the arrangement of dark lungs and bright mediastinum.
    """
    small = resize(resized, THUMBNAIL_SIDE).ravel()
    return np.take(equalization_lut(small).astype(np.float32) / 255.0, small)


@dataclass(frozen=True)
class DistanceStatistics:
    """A PCA model of fitting vectors ``(N, C)`` and the cut-off of its :meth:`distance`.

    The arrays are float64 in memory (float32 on disk: the fit rounds them so, before it
    measures the quantile, so that the cut-off holds for what is stored).
    """

    mean: np.ndarray  # (C,)
    components: np.ndarray  # (k, C), orthonormal rows
    variances: np.ndarray  # (k,), the fitting vectors' variance along each component
    residual_variance: float  # scales the residual term so its fitting-set mean is k
    max_distance: float  # the cut-off: margin x quantile_distance
    quantile_distance: float  # the 1 - exceed_fraction quantile of the fitting distances
    margin: float
    exceed_fraction: float
    n_images: int

    @property
    def n_components(self) -> int:
        return len(self.variances)

    def distance(self, vector: np.ndarray) -> float:
        """Distance of ``vector`` ``(C,)`` from the fitted distribution.

        ``sqrt(sum_k p_k**2 / var_k + |r|**2 / residual_variance)``: the Mahalanobis
        distance of the projection ``p`` on the components, plus the squared norm of the
        residual ``r`` outside them. The components are orthonormal, so
        ``|r|**2 = |c|**2 - |p|**2`` for the centred ``c``: a per-request cost of four
        small products, not a projection back to ``C`` dimensions.
        """
        if len(self.mean) != vector.shape[-1]:
            raise ValueError(f"scope statistics have {len(self.mean)} dimensions, the input "
                             f"{vector.shape[-1]}; refit them: pneumoscan fit-scope MODEL "
                             "--data DATA")
        centred = vector - self.mean  # float64
        projected = self.components @ centred
        residual = max(float(centred @ centred) - float(projected @ projected), 0.0)
        return math.sqrt(float((projected / self.variances) @ projected)
                         + residual / self.residual_variance)

    def ratio(self, vector: np.ndarray) -> float:
        """:meth:`distance` in units of the cut-off: above 1 is out of scope."""
        return self.distance(vector) / self.max_distance


@dataclass(frozen=True)
class ScopeStatistics:
    """What the distance checks compare an image with: the model's training images."""

    features: DistanceStatistics  # of the pooled last feature maps (C,)
    layout: DistanceStatistics  # of the :func:`thumbnail` vectors (THUMBNAIL_SIDE**2,)


def check_layout(resized: np.ndarray, statistics: DistanceStatistics) -> ScopeResult:
    """Compare the image's layout (:func:`thumbnail` of the ``(S, S)`` model input) with
    the training radiographs'."""
    ratio = statistics.ratio(thumbnail(resized))
    return ScopeResult(ratio <= 1.0, "" if ratio <= 1.0 else LAYOUT_REASON, ratio)


def check_features(pooled: np.ndarray, statistics: DistanceStatistics) -> ScopeResult:
    """Compare the model's pooled features ``(C,)`` with the training images'."""
    ratio = statistics.ratio(pooled)
    return ScopeResult(ratio <= 1.0, "" if ratio <= 1.0 else FEATURE_REASON, ratio)


def is_chest_radiograph(result: ScopeResult) -> bool:
    """Whether the checks found a frontal chest radiograph: in scope, or out of it only
    because the model's features find it unlike its training films (the feature distance,
    the last check). An adult's film from another hospital is such a film; the population
    check (:mod:`pneumoscan.population`) answers for it, as telling adults is what it was
    fitted on."""
    return result.in_scope or result.reason == FEATURE_REASON


def assess_scope(decoded: DecodedImage, resized: np.ndarray, pooled: np.ndarray,
                 statistics: ScopeStatistics | None) -> ScopeResult:
    """All checks, cheapest first: header and image statistics, then the layout of the
    ``(S, S)`` model input ``resized``, then the pooled features ``(C,)``.

    Without ``statistics`` an image that passes the image checks is out of scope with
    :data:`NOT_FITTED_REASON`: a model that cannot tell must not say "in scope".
    """
    result = check_image(decoded)
    if not result.in_scope:
        return result
    if statistics is None:
        return NOT_FITTED
    layout = check_layout(resized, statistics.layout)
    if not layout.in_scope:
        return layout
    features = check_features(pooled, statistics.features)
    if not features.in_scope:
        return features
    return ScopeResult(True, "", max(layout.distance or 0.0, features.distance or 0.0))


def fit_distance_statistics(vectors: np.ndarray, *, max_components: int = 32,
                            explained: float = 0.99, exceed_fraction: float = 0.0025,
                            margin: float = 1.0) -> DistanceStatistics:
    """PCA statistics of ``vectors`` ``(N, C)`` and the cut-off of their distance.

    Keeps the fewest components explaining ``explained`` of the variance (at most
    ``max_components``); ``max_distance`` is ``margin`` times the ``1 - exceed_fraction``
    quantile of the fitting vectors' own distances.
    """
    data = np.asarray(vectors, dtype=np.float64)
    if data.ndim != 2 or len(data) < 10:
        raise ValueError(f"need (N >= 10, C) vectors to fit scope statistics, got shape "
                         f"{data.shape}")
    mean = data.mean(axis=0)
    centred = data - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2 / (len(data) - 1)
    share = np.cumsum(variance) / max(float(variance.sum()), 1e-12)
    k = min(max_components, int(np.searchsorted(share, explained)) + 1, len(variance) - 1)
    components, variances = vt[:k], np.maximum(variance[:k], 1e-12)
    residual = centred - (centred @ components.T) @ components
    # The residual term weighs like the k projected dimensions together: its mean is k.
    residual_variance = max(float(np.mean(np.sum(residual**2, axis=1))) / k, 1e-12)
    unscaled = DistanceStatistics(
        mean=_stored(mean), components=_stored(components), variances=_stored(variances),
        residual_variance=residual_variance, max_distance=1.0, quantile_distance=1.0,
        margin=margin, exceed_fraction=exceed_fraction, n_images=len(data))
    distances = np.array([unscaled.distance(v) for v in data])
    quantile = float(np.quantile(distances, 1.0 - exceed_fraction))
    return replace(unscaled, max_distance=quantile * margin, quantile_distance=quantile)


def fit_scope_statistics(pooled_features: np.ndarray, thumbnails: np.ndarray, *,
                         exceed_fraction: float = TRAINING_EXCEED_FRACTION,
                         feature_margin: float = FEATURE_MARGIN,
                         max_components: int = 32) -> ScopeStatistics:
    """Fit a model's :class:`ScopeStatistics` on its training images.

    Args:
        pooled_features: ``(N, C)`` globally pooled last feature maps of training images
            (their augmented copies may be included: real radiographs vary more than one
            centre's training set).
        thumbnails: ``(M, THUMBNAIL_SIDE**2)`` :func:`thumbnail` vectors of the same images.
        exceed_fraction: share of the fitting images that may fall beyond the cut-offs,
            split evenly between the two checks.
        feature_margin: the feature cut-off is this many times its training quantile
            (see :data:`FEATURE_MARGIN`).
        max_components: most PCA components kept for the features.
    """
    share = exceed_fraction / 2
    return ScopeStatistics(
        features=fit_distance_statistics(pooled_features, max_components=max_components,
                                         exceed_fraction=share, margin=feature_margin),
        layout=fit_distance_statistics(thumbnails, max_components=THUMBNAIL_COMPONENTS,
                                       explained=0.999, exceed_fraction=share))


def _stored(values: np.ndarray) -> np.ndarray:
    """As stored (float32), back in float64 for the arithmetic."""
    return values.astype(np.float32).astype(np.float64)
