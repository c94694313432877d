"""The Predictor: load a model once, then predict on paths, bytes, PIL images or arrays.

The CLI, the Python API and the web server all go through this class. Preprocessing, class
names, threshold and calibration come from the model's ``model.json`` only.

    >>> from pneumoscan import Predictor
    >>> predictor = Predictor.load()            # the shipped model
    >>> result = predictor.predict("xray.png")
    >>> result.meaning.finding        # label, probability, cause; None when it does not apply
    >>> result.meaning.reasons        # why not, in sentences
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan.backends import Backend, create_backend
from pneumoscan.decision import Decisions, decide, is_positive
from pneumoscan.errors import PneumoscanError
from pneumoscan.fitted_state import load_population, load_scope
from pneumoscan.heatmap import scaled_heatmap
from pneumoscan.imaging import (
    DEFAULT_MAX_PIXELS,
    MIN_SIDE,
    DecodedImage,
    DicomInfo,
    ImageSource,
    decode_image,
)
from pneumoscan.inference import run_batches
from pneumoscan.modelcard import ModelCard
from pneumoscan.modelfile import ModelLike, resolve_model
from pneumoscan.population import (
    UNKNOWN,
    PopulationClassifier,
    PopulationResult,
    assess_population,
)
from pneumoscan.preprocessing import normalize, resize_all
from pneumoscan.result_meaning import ResultMeaning, interpret
from pneumoscan.scope import ScopeResult, ScopeStatistics, assess_scope, is_chest_radiograph

logger = logging.getLogger(__name__)

#: The smallest side a radiograph is decoded at: twice the training images' 224 px, which
#: every input is first resized to. A JPEG DICOM is decoded scaled in the DCT down to this
#: (:mod:`pneumoscan.dicom_pixels`), a fraction of the full decode's work, within 0.02 of
#: the full decode's P(pneumonia) on the shared DICOMs (tests/test_dicom_pixels.py).
DECODE_MIN_SIDE = 448


@dataclass(frozen=True)
class Prediction:
    """One image's result: what the model computed, and the checks around it.

    ``label``, ``probability``, ``cause`` and ``cause_probability`` are the model's raw
    output. Whether they may be shown as a finding, and why not, is :attr:`meaning`'s to
    say (:mod:`pneumoscan.result_meaning`); every face renders that.
    """

    label: str  # a class name from the model card, e.g. "PNEUMONIA" (raw model output)
    probability: float  # calibrated P(pneumonia) (raw model output)
    threshold: float  # the model's operating threshold
    in_scope: bool  # False: not plausibly a frontal chest radiograph; do not trust
    scope_reason: str
    cause: str | None  # "bacterial" or "viral", only when label is pneumonia
    cause_probability: float | None  # P(bacterial | pneumonia), only when label is pneumonia
    heatmap: np.ndarray | None  # (h, w) float32 in [0, 1]: the model's evidence of pneumonia
    model: str  # model version
    width: int  # original image size
    height: int
    pixels: np.ndarray | None = None  # the decoded (H, W) image, for overlays
    # Distance to the training images in units of the scope cut-off (above 1: out of
    # scope); None when the image checks or a missing scope fit decided first.
    scope_distance: float | None = None
    # Who the image is of (pneumoscan.population): "pediatric", "adult" or "unknown", why,
    # P(adult) when the image decided, and a warning when the result does not apply.
    population: str = UNKNOWN
    population_reason: str = ""
    population_probability: float | None = None
    population_warning: str = ""

    @property
    def is_pneumonia(self) -> bool:
        """The raw output reached the threshold (a finding only when :attr:`applicable`)."""
        return bool(is_positive(self.probability, self.threshold))

    @functools.cached_property
    def meaning(self) -> ResultMeaning:
        """Whether the result applies, what may be shown as a finding, and why."""
        return interpret(label=self.label, probability=self.probability,
                         threshold=self.threshold, positive=self.is_pneumonia,
                         cause=self.cause, cause_probability=self.cause_probability,
                         in_scope=self.in_scope, scope_reason=self.scope_reason,
                         population=self.population,
                         population_reason=self.population_reason,
                         population_warning=self.population_warning)

    @property
    def applicable(self) -> bool:
        """Whether the result may be read as a finding: in scope, no population warning."""
        return self.meaning.applicable

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, rendered from :attr:`meaning`.

        ``label``, ``probability``, ``positive``, ``cause`` and ``cause_probability`` are
        the finding: null when the result does not apply. ``model_output`` holds the
        model's raw output always, for programs; it is not a finding by itself.
        ``model_output_note`` is the sentence people may see about it, greyed ("" when they
        may not: the result applies, or the image is out of scope).
        """
        meaning = self.meaning
        finding = meaning.finding
        return {
            "applicable": meaning.applicable,
            "not_applicable_reasons": list(meaning.reasons),
            "label": None if finding is None else finding.label,
            "probability": None if finding is None else round(finding.probability, 6),
            "positive": None if finding is None else finding.positive,
            "threshold": self.threshold,
            "cause": None if finding is None else finding.cause,
            "cause_probability": None if finding is None or finding.cause_probability is None
            else round(finding.cause_probability, 6),
            "heatmap_style": meaning.heatmap,
            "in_scope": self.in_scope, "scope_reason": self.scope_reason,
            "scope_distance": None if self.scope_distance is None
            else round(self.scope_distance, 3),
            "population": self.population, "population_reason": self.population_reason,
            "population_probability": None if self.population_probability is None
            else round(self.population_probability, 4),
            "population_warning": self.population_warning,
            "model_output": meaning.model_output.to_dict(),
            "model_output_note": meaning.model_output_note,
            "model": self.model, "width": self.width, "height": self.height,
        }


@dataclass(frozen=True)
class FileResult:
    """One input file's outcome in batch mode: a prediction, or why there is none."""

    file: str  # the path as given or found
    prediction: Prediction | None
    error: str = ""  # "" on success, else what went wrong with this file
    dicom: DicomInfo | None = None  # a DICOM input's header facts (the node's intake reads)

    @property
    def ok(self) -> bool:
        return self.prediction is not None


class Predictor:
    """A loaded model plus everything needed to turn an image into a :class:`Prediction`."""

    def __init__(self, backend: Backend, card: ModelCard,
                 *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 scope: ScopeStatistics | None = None,
                 population: PopulationClassifier | None = None) -> None:
        self.backend = backend
        self.card = card
        self.max_pixels = max_pixels
        self.scope = scope  # None: not fitted, and every image is out of scope
        # None: not fitted, and an image without an age in a DICOM header is "unknown"
        self.population = population

    @classmethod
    def load(cls, path: ModelLike = None, *, backend: str = "auto",
             max_pixels: int = DEFAULT_MAX_PIXELS, threads: int | None = None) -> Predictor:
        """Load a model folder or ``.safetensors`` file (None: the shipped default), its
        backend running ``threads`` intra-op threads (None: the backend's default).

        The model's files are found and its card read once (:func:`resolve_model`), and
        its weights hashed at most once, for everything beside them that must match.
        """
        files = resolve_model(path)
        return cls(create_backend(backend, files, threads=threads), files.card,
                   max_pixels=max_pixels,
                   scope=load_scope(files),
                   population=load_population(files))

    @property
    def version(self) -> str:
        return self.card.version or self.card.arch

    def decode(self, source: ImageSource) -> DecodedImage:
        """Decode an input with this predictor's pixel limit; refuse one under
        :data:`~pneumoscan.imaging.MIN_SIDE` pixels on a side (ImageTooSmallError). A JPEG
        DICOM is decoded scaled down to :data:`DECODE_MIN_SIDE` (the one decode every face
        uses, so the CLI, the server and the DICOM node give one answer per file)."""
        return decode_image(source, max_pixels=self.max_pixels, min_side=MIN_SIDE,
                            reduce_to=DECODE_MIN_SIDE)

    def predict(self, source: ImageSource, *, heatmap: bool = True) -> Prediction:
        """Predict one image. Raises ImageDecodeError (ImageTooSmallError included) or
        ImageTooLargeError on bad input."""
        return self.predict_decoded([self.decode(source)], heatmap=heatmap)[0]

    def predict_decoded(self, images: Sequence[DecodedImage], *,
                        heatmap: bool = True) -> list[Prediction]:
        """Predict a batch of decoded images in one forward pass."""
        if not images:
            return []
        config = self.card.preprocessing
        # Resized, then normalised: the resized image also feeds the scope check.
        resized = resize_all((d.pixels for d in images), config.image_size,
                             config.source_size)  # (B, S, S)
        inputs = normalize(resized, config)  # (B, 1, S, S)
        logits, evidence, pooled = self.backend.run(inputs)  # (B, 2), (B, h, w), (B, C)
        decisions = decide(logits, self.card)
        results = []
        for i, decoded in enumerate(images):
            scope = assess_scope(decoded, resized[i], pooled[i], self.scope)
            population = assess_population(decoded.dicom, pooled[i], resized[i],
                                           is_chest_radiograph(scope), self.population)
            heat = scaled_heatmap(evidence[i], self.card.heatmap_scale) if heatmap else None
            results.append(self._result(decoded, decisions, i, heat, scope, population))
        return results

    def evidence(self, image: np.ndarray) -> np.ndarray:
        """The heat map ``(h, w)`` in [0, 1] of one normalised input ``(1, S, S)``: its
        :meth:`raw_evidence` on the model's heat-map scale."""
        return scaled_heatmap(self.raw_evidence(image), self.card.heatmap_scale)

    def raw_evidence(self, image: np.ndarray) -> np.ndarray:
        """The model's evidence of pneumonia ``(h, w)``, in logit units, of one normalised
        input ``(1, S, S)``: each cell's share of the pneumonia logit
        (:mod:`pneumoscan.heatmap`), from the same forward pass as the prediction."""
        return self.backend.run(image[None])[1][0]

    def pooled_features(self, resized: np.ndarray, *, batch_size: int = 64,
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Globally pooled last feature maps ``(N, C)`` of resized uint8 images ``(N, S, S)``.

        What the scope check compares with the training distribution; used to fit it.
        """
        (pooled,) = run_batches(lambda batch: self.backend.run(batch)[2:], resized,
                                self.card.preprocessing, batch_size=batch_size,
                                progress=progress)
        return pooled

    def predict_files(self, files: Iterable[Path | str], *, batch_size: int = 16,
                      heatmap: bool = False, progress: Callable[[int], None] | None = None,
                      ) -> Iterator[FileResult]:
        """Predict many files, ``batch_size`` per forward pass, in order, one result each.

        A file that cannot be read (missing, empty, truncated, not an image, over the pixel
        limit) yields a :class:`FileResult` with its ``error`` set; the others go on. Only
        ``batch_size`` decoded images are held at a time.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        pending: list[tuple[str, DecodedImage | str]] = []  # decoded image or error
        for file in files:
            name = str(file)
            try:
                pending.append((name, self.decode(Path(file))))
            except (PneumoscanError, OSError) as exc:
                # the file's name is patient data: the log says what failed, the result
                # (shown to the user who asked) says which file
                logger.warning("cannot predict one input (%s); its result names it",
                               exc.__class__.__name__)
                pending.append((name, str(exc)))
            except Exception as exc:  # one odd file must not end a folder run:
                # decoders raise many types on corrupt data (Pillow even SyntaxError).
                message = f"{name}: cannot read the image ({exc.__class__.__name__}: {exc})"
                logger.warning("cannot predict one input (%s); its result names it",
                               exc.__class__.__name__)
                pending.append((name, message))
            if sum(isinstance(item, DecodedImage) for _, item in pending) == batch_size:
                yield from self._predict_pending(pending, heatmap, progress)
                pending = []
        yield from self._predict_pending(pending, heatmap, progress)

    def _predict_pending(self, pending: list[tuple[str, DecodedImage | str]], heatmap: bool,
                         progress: Callable[[int], None] | None) -> Iterator[FileResult]:
        decoded = [item for _, item in pending if isinstance(item, DecodedImage)]
        predictions = iter(self.predict_decoded(decoded, heatmap=heatmap))
        if progress is not None and pending:
            progress(len(pending))
        for name, item in pending:
            if isinstance(item, str):
                yield FileResult(name, None, item)
            else:
                yield FileResult(name, next(predictions), dicom=item.dicom)

    def _result(self, decoded: DecodedImage, decisions: Decisions, index: int,
                heatmap: np.ndarray | None, scope: ScopeResult,
                population: PopulationResult) -> Prediction:
        positive = bool(decisions.positive[index])
        height, width = decoded.pixels.shape
        return Prediction(
            label=self.card.class_names[int(decisions.label_index[index])],
            probability=float(decisions.probability[index]),
            threshold=self.card.threshold,
            in_scope=scope.in_scope,
            scope_reason=scope.reason,
            scope_distance=scope.distance,
            population=population.population,
            population_reason=population.reason,
            population_probability=population.probability,
            population_warning=population.warning,
            cause=self.card.cause_names[decisions.cause_index[index]] if positive else None,
            cause_probability=float(decisions.cause_probability[index]) if positive else None,
            heatmap=heatmap,
            model=self.version,
            width=width,
            height=height,
            pixels=decoded.pixels,
        )
