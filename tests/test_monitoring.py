"""The service metrics (pneumoscan.monitoring): outcomes and reasons as fixed codes, the
rolling gauges over a window, and the Prometheus text they give."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pneumoscan.modelcard import ModelCard
from pneumoscan.modelfile import resolve_model
from pneumoscan.monitoring import ServiceMetrics, expected_positive_share, not_applicable_reason
from pneumoscan.population import ADULT, ADULT_WARNING, PEDIATRIC, UNKNOWN, UNKNOWN_WARNING
from pneumoscan.predictor import Prediction
from pneumoscan.preprocessing import PreprocessConfig
from pneumoscan.scope import FEATURE_REASON, LAYOUT_REASON, NOT_FITTED_REASON

CHILD = Prediction(label="PNEUMONIA", probability=0.9, threshold=0.5, in_scope=True,
                   scope_reason="", cause=None, cause_probability=None, heatmap=None,
                   model="m-1", width=100, height=100, population=PEDIATRIC)


def samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by name and sorted labels."""
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_reasons_are_fixed_codes_never_the_words() -> None:
    header = replace(CHILD, in_scope=False, scope_reason="DICOM body part 'SMITH^JOHN' is "
                     "not the chest")
    assert not_applicable_reason(header) == "out_of_scope_header"
    assert not_applicable_reason(replace(CHILD, in_scope=False,
                                         scope_reason=LAYOUT_REASON)) == "out_of_scope_layout"
    assert not_applicable_reason(replace(CHILD, in_scope=False,
                                         scope_reason=FEATURE_REASON)) == "out_of_scope_features"
    assert not_applicable_reason(replace(CHILD, in_scope=False,
                                         scope_reason=NOT_FITTED_REASON)) == "scope_not_fitted"
    assert not_applicable_reason(replace(CHILD, in_scope=False, scope_reason="colour image: "
                                         "radiographs are grayscale")) == "out_of_scope_image"
    assert not_applicable_reason(replace(CHILD, population=ADULT,
                                         population_warning=ADULT_WARNING)) == "population_adult"
    assert not_applicable_reason(replace(CHILD, population=UNKNOWN, population_warning=
                                         UNKNOWN_WARNING)) == "population_unknown"
    metrics = ServiceMetrics("web", "m-1", "onnx")
    metrics.record_prediction(header)
    assert "SMITH" not in metrics.exposition().decode()


def test_counts_latency_and_rolling_shares() -> None:
    metrics = ServiceMetrics("dicom", "m-1+site-a", "onnx", expected_positive=0.4, window=4)
    negative = replace(CHILD, label="NORMAL", probability=0.1)
    adult = replace(CHILD, population=ADULT, population_warning=ADULT_WARNING)
    out = replace(CHILD, in_scope=False, scope_reason=LAYOUT_REASON)
    for prediction in (CHILD, out, CHILD, negative, adult):  # the window keeps the last 4
        metrics.record_prediction(prediction)
    metrics.record_refused(0xC102)
    metrics.record_refused(415)
    for seconds in (0.02, 0.3):
        metrics.observe_seconds(seconds)
    found = samples(metrics)
    images = "pneumoscan_images_total"
    assert found[(images, (("outcome", "positive"), ("reason", "")))] == 2
    assert found[(images, (("outcome", "negative"), ("reason", "")))] == 1
    assert found[(images, (("outcome", "not_applicable"),
                           ("reason", "out_of_scope_layout")))] == 1
    assert found[(images, (("outcome", "not_applicable"), ("reason", "population_adult")))] == 1
    assert found[(images, (("outcome", "refused"), ("reason", "0xC102")))] == 1
    assert found[(images, (("outcome", "refused"), ("reason", "415")))] == 1
    assert found[("pneumoscan_request_seconds_count", ())] == 2
    assert found[("pneumoscan_request_seconds_bucket", (("le", "0.025"),))] == 1
    assert found[("pneumoscan_model_info", (("backend", "onnx"), ("service", "dicom"),
                                            ("version", "m-1+site-a")))] == 1
    assert found[("pneumoscan_expected_positive_share", ())] == 0.4
    # last 4 answered: out of scope, child positive, child negative, adult
    assert found[("pneumoscan_recent_images", ())] == 4
    assert found[("pneumoscan_recent_out_of_scope_share", ())] == pytest.approx(1 / 4)
    assert found[("pneumoscan_recent_adult_share", ())] == pytest.approx(1 / 3)
    assert found[("pneumoscan_recent_mean_probability", ())] == pytest.approx((0.9 + 0.1) / 2)
    assert found[("pneumoscan_recent_positive_share", ())] == pytest.approx(1 / 2)


def test_the_expected_positive_share_is_the_validation_or_site_one() -> None:
    shipped = resolve_model(None).card
    validation = shipped.validation
    assert expected_positive_share(shipped) == pytest.approx(
        (validation["tp"] + validation["fp"]) / validation["n"])
    site = replace(shipped, site_calibration={"figures": {"tp": 30, "fp": 5, "n": 70}})
    assert expected_positive_share(site) == pytest.approx(35 / 70)
    assert expected_positive_share(ModelCard(arch="x", preprocessing=PreprocessConfig())) is None
