"""What a running service counts, for Prometheus: ``/metrics`` of the web server and of the
DICOM node (``--metrics-port``), in the text format of prometheus-client.

One :class:`ServiceMetrics` per service, in its own registry (two apps in one process, or
the tests, do not mix their counts). Exposed:

- ``pneumoscan_images_total{outcome, reason}``: every image by outcome, ``positive`` or
  ``negative`` (the result applies), ``not_applicable`` (reason: which scope check, or the
  population) or ``refused`` (reason: the HTTP or DICOM status);
- ``pneumoscan_request_seconds``: latency histogram, per request or C-STORE;
- ``pneumoscan_model_info{version, backend, service}``: 1, the version the faces show;
- ``pneumoscan_expected_positive_share``: the share called pneumonia on the films the
  model was validated (or, for a site model, calibrated) on, what the live share is
  compared with;
- rolling gauges over the last :data:`WINDOW` images answered: ``..._recent_images``,
  ``..._recent_out_of_scope_share``, ``..._recent_adult_share`` (of those in scope),
  ``..._recent_mean_probability`` and ``..._recent_positive_share`` (of those the result
  applies to). The counters give the same rates over any period in PromQL.

Labels hold only these fixed codes, the version and the backend: never a file name, a
DICOM tag or anything else about a patient.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pneumoscan.population import ADULT, UNKNOWN
from pneumoscan.scope import FEATURE_REASON, LAYOUT_REASON, NOT_FITTED_REASON

if TYPE_CHECKING:
    from pneumoscan.modelcard import ModelCard
    from pneumoscan.predictor import Prediction

#: Images the rolling gauges look back over.
WINDOW = 1000
#: Latency buckets, seconds: a CPU prediction takes tens of milliseconds to a few seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: The content type of :meth:`ServiceMetrics.exposition`.
CONTENT_TYPE = CONTENT_TYPE_LATEST


def not_applicable_reason(prediction: Prediction) -> str:
    """A fixed code for why a result does not apply: which scope check said so, or the
    population. Never the reason's words (a header's value can be quoted there)."""
    if not prediction.in_scope:
        reason = prediction.scope_reason
        if reason == NOT_FITTED_REASON:
            return "scope_not_fitted"
        if reason == LAYOUT_REASON:
            return "out_of_scope_layout"
        if reason == FEATURE_REASON:
            return "out_of_scope_features"
        if reason.startswith("DICOM "):
            return "out_of_scope_header"
        return "out_of_scope_image"
    if prediction.population == ADULT:
        return "population_adult"
    if prediction.population == UNKNOWN:
        return "population_unknown"
    return "population_other"


def expected_positive_share(card: ModelCard) -> float | None:
    """The share of films called pneumonia where the model's threshold was set: a site
    model's calibration films, else its validation set. None when the card does not say."""
    figures = card.site_calibration.get("figures") if card.site_calibration else None
    figures = figures or card.validation
    try:
        return (int(figures["tp"]) + int(figures["fp"])) / int(figures["n"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


@dataclass
class _Recent:
    """Running sums over the last :data:`WINDOW` images answered."""

    in_scope: int = 0
    adult: int = 0
    applicable: int = 0
    positive: int = 0
    probability: float = 0.0


class ServiceMetrics:
    """The counters, histogram and gauges of one service (``web`` or ``dicom``)."""

    def __init__(self, service: str, version: str, backend: str,
                 expected_positive: float | None = None, window: int = WINDOW) -> None:
        self.registry = CollectorRegistry()
        self.images = Counter("pneumoscan_images", "Images by outcome and reason.",
                              ["outcome", "reason"], registry=self.registry)
        self.latency = Histogram("pneumoscan_request_seconds", "Time from a request (or "
                                 "C-STORE) arriving to its answer.", buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        info = Gauge("pneumoscan_model_info", "The model served (value 1).",
                     ["version", "backend", "service"], registry=self.registry)
        info.labels(version=version, backend=backend, service=service).set(1)
        expected = Gauge("pneumoscan_expected_positive_share", "Share called pneumonia "
                         "on the films the threshold was set on.", registry=self.registry)
        if expected_positive is not None:
            expected.set(expected_positive)
        self._gauges = {name: Gauge(f"pneumoscan_recent_{name}", text, registry=self.registry)
                        for name, text in (
                            ("images", f"Images answered, of the last {window}."),
                            ("out_of_scope_share", "Share out of scope, of the recent "
                             "images answered."),
                            ("adult_share", "Share adult, of the recent images in scope."),
                            ("mean_probability", "Mean P(pneumonia), of the recent images "
                             "the result applies to."),
                            ("positive_share", "Share called pneumonia, of the recent "
                             "images the result applies to."))}
        self._window: deque[tuple[bool, bool, bool, bool, float]] = deque(maxlen=window)
        self._sums = _Recent()
        self._lock = threading.Lock()

    def record_prediction(self, prediction: Prediction) -> None:
        """Count one image that got a result (applicable or not)."""
        if prediction.applicable:
            outcome = "positive" if prediction.is_pneumonia else "negative"
            self.images.labels(outcome=outcome, reason="").inc()
        else:
            self.images.labels(outcome="not_applicable",
                               reason=not_applicable_reason(prediction)).inc()
        self._remember(prediction.in_scope, prediction.in_scope and prediction.population == ADULT,
                       prediction.applicable, prediction.applicable and prediction.is_pneumonia,
                       prediction.probability if prediction.applicable else 0.0)

    def record_not_applicable(self, reason: str) -> None:
        """Count an image answered without a prediction, for ``reason`` (a fixed code):
        the DICOM node's images whose header says they are not for this model."""
        self.images.labels(outcome="not_applicable", reason=reason).inc()
        self._remember(False, False, False, False, 0.0)

    def record_refused(self, status: int | str) -> None:
        """Count an image refused with ``status`` (an HTTP status, or a DICOM one)."""
        code = f"0x{status:04X}" if isinstance(status, int) and status > 999 else str(status)
        self.images.labels(outcome="refused", reason=code).inc()

    def observe_seconds(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return bytes(generate_latest(self.registry))

    def _remember(self, in_scope: bool, adult: bool, applicable: bool, positive: bool,
                  probability: float) -> None:
        entry = (in_scope, adult, applicable, positive, probability)
        with self._lock:
            if len(self._window) == self._window.maxlen:
                self._add(self._window[0], -1)
            self._window.append(entry)
            self._add(entry, 1)
            self._publish()

    def _add(self, entry: tuple[bool, bool, bool, bool, float], sign: int) -> None:
        in_scope, adult, applicable, positive, probability = entry
        self._sums.in_scope += sign * in_scope
        self._sums.adult += sign * adult
        self._sums.applicable += sign * applicable
        self._sums.positive += sign * positive
        self._sums.probability += sign * probability

    def _publish(self) -> None:
        count, sums = len(self._window), self._sums
        self._gauges["images"].set(count)
        self._gauges["out_of_scope_share"].set((count - sums.in_scope) / count)
        if sums.in_scope:
            self._gauges["adult_share"].set(sums.adult / sums.in_scope)
        if sums.applicable:
            self._gauges["mean_probability"].set(sums.probability / sums.applicable)
            self._gauges["positive_share"].set(sums.positive / sums.applicable)
