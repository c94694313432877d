"""Scoring the shift suite: per-shift figures at a frozen threshold, worst case and mean."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscan.fitting.shift_scores import (
    score_suite,
    shifted_probabilities,
    summarise,
)
from pneumoscan.fitting.shifts import SHIFTS, shift_by_name

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])


def test_scores_at_the_frozen_threshold_and_the_worst_case() -> None:
    probabilities = {
        "none": np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]),
        "crop 84%": np.array([0.1, 0.2, 0.6, 0.7, 0.65, 0.7, 0.8, 0.9]),  # 2 normals cross
        "blur 1.5 px": np.array([0.1, 0.2, 0.3, 0.4, 0.45, 0.7, 0.8, 0.9]),  # 1 missed
    }
    scores = score_suite(LABELS, probabilities, threshold=0.5)
    by_name = {s.name: s for s in scores}
    assert by_name["none"].auc == 1.0
    assert by_name["crop 84%"].specificity == 0.5 and by_name["crop 84%"].sensitivity == 1.0
    assert by_name["blur 1.5 px"].sensitivity == 0.75
    summary = summarise(scores)
    assert summary.worst_specificity == 0.5 and summary.worst_specificity_shift == "crop 84%"
    assert summary.worst_sensitivity_shift == "blur 1.5 px"
    assert summary.mean_specificity == pytest.approx(0.75)  # clean row excluded
    assert summary.worst_auc == pytest.approx(by_name["crop 84%"].auc)


def test_shifted_probabilities_calls_the_model_once_per_shift() -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    seen: list[np.ndarray] = []

    def probability(batch: np.ndarray) -> np.ndarray:
        seen.append(batch)
        return batch.mean(axis=(1, 2)) / 255.0

    out = shifted_probabilities(probability, images, SHIFTS[:3])
    assert list(out) == [s.name for s in SHIFTS[:3]] and len(seen) == 3
    np.testing.assert_array_equal(seen[0], images)


def test_errors() -> None:
    with pytest.raises(ValueError, match="no shifted rows"):
        summarise(score_suite(LABELS, {"none": np.linspace(0, 1, 8)}, 0.5))
    assert shift_by_name("crop 84%").group == "framing"
