"""The --cam-dir overlay: the result written in its corner, the image size unchanged."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from pneumoscan.heatmap import legend_bar
from pneumoscan.population import ADULT_WARNING
from pneumoscan.predictor import Prediction
from pneumoscan.reports.result_overlay import corner_lines, label_corner, result_overlay_png


def _prediction(**changes: object) -> Prediction:
    rng = np.random.default_rng(0)
    base = Prediction(label="PNEUMONIA", probability=0.93, threshold=0.5, in_scope=True,
                      scope_reason="", cause="viral", cause_probability=0.2,
                      heatmap=rng.random((5, 5)).astype(np.float32), model="m", width=300,
                      height=200, pixels=rng.integers(0, 255, (200, 300), np.uint8),
                      population="pediatric")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_an_applicable_result_says_its_label_and_numbers() -> None:
    lines = [text for text, _ in corner_lines(_prediction())]
    assert lines == ["PNEUMONIA", "P(pneumonia) 0.930, threshold 0.500"]


def test_a_result_that_does_not_apply_says_so_first() -> None:
    adult = [text for text, _ in corner_lines(_prediction(population="adult",
                                                          population_warning=ADULT_WARNING))]
    assert adult[0] == "NOT APPLICABLE: adult"
    assert adult[1].startswith("model output PNEUMONIA") and "not a finding" in adult[1]
    # out of scope: the population was not assessed, and the model's output means nothing
    photo = corner_lines(_prediction(in_scope=False, population="unknown",
                                     population_warning="unknown population"))
    assert [text for text, _ in photo] == ["NOT APPLICABLE: out of scope"]
    both = corner_lines(_prediction(in_scope=False, population="adult",
                                    population_warning=ADULT_WARNING))
    assert both[0][0] == "NOT APPLICABLE: out of scope, adult"


def test_the_corner_is_drawn_and_the_size_kept() -> None:
    rgb = np.full((200, 300, 3), 128, np.uint8)
    labelled = label_corner(rgb, [("PNEUMONIA", (255, 0, 0))])
    assert labelled.shape == rgb.shape
    assert not np.array_equal(labelled[:20, :80], rgb[:20, :80])  # the corner changed
    np.testing.assert_array_equal(labelled[100:, 150:], rgb[100:, 150:])  # the rest did not
    png = Image.open(io.BytesIO(result_overlay_png(_prediction())))
    assert png.size == (300, 200 + legend_bar(300).shape[0])


def test_an_overlay_needs_pixels_and_a_heat_map() -> None:
    with pytest.raises(ValueError, match="heatmap=True"):
        result_overlay_png(_prediction(heatmap=None))
