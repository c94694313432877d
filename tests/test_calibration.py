"""Temperature scaling, the operating-threshold rule, and the operating point fitted on
clean and shifted validation images pooled."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscan.calibration import (
    apply_temperature,
    choose_threshold,
    fit_operating_point,
    fit_temperature,
    pooled,
)

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])


def test_apply_temperature_values() -> None:
    out = apply_temperature(np.array([0.0, 2.0, -2.0]), 2.0)
    np.testing.assert_allclose(out, [0.5, 0.7310585786, 0.2689414214], rtol=1e-9)


def test_apply_temperature_per_column_equals_one_call_per_column() -> None:
    logits = np.random.default_rng(0).normal(0, 3, (7, 2)).astype(np.float32)
    both = apply_temperature(logits, np.array([1.7, 0.6]))
    np.testing.assert_array_equal(both[:, 0], apply_temperature(logits[:, 0], 1.7))
    np.testing.assert_array_equal(both[:, 1], apply_temperature(logits[:, 1], 0.6))


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_fit_temperature_recovers_a_known_temperature(true_temperature: float) -> None:
    rng = np.random.default_rng(0)
    calibrated = rng.normal(0.0, 2.0, 20_000)  # the logits that are true probabilities
    labels = (rng.random(calibrated.size) < 1 / (1 + np.exp(-calibrated))).astype(int)
    logits = calibrated * true_temperature  # over- (T > 1) or under-confident (T < 1)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.06)


def test_fit_temperature_closed_form() -> None:
    # One logit value z = 2 with 3 of 4 labels positive: the NLL is least where
    # sigmoid(2 / T) = 3/4, i.e. 2 / T = log 3 -> T = 2 / log 3 = 1.82048...
    logits = np.full(400, 2.0)
    labels = np.tile([1, 1, 1, 0], 100)
    assert fit_temperature(logits, labels) == pytest.approx(2 / np.log(3), rel=1e-5)
    # sign flips change nothing: z = -2 with 1 of 4 positive is the same problem
    assert fit_temperature(-logits, 1 - labels) == pytest.approx(2 / np.log(3), rel=1e-5)


def test_fit_temperature_stays_in_its_bounds() -> None:
    # labels independent of the logits: the best temperature is as large as allowed
    logits = np.array([-3.0, 3.0, -3.0, 3.0])
    labels = np.array([1, 0, 0, 1])
    assert fit_temperature(logits, labels) == pytest.approx(20.0, rel=1e-3)


def test_choose_threshold_median_of_the_perfect_plateau() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    # every t in 0.41 .. 0.60 gives sensitivity = specificity = 1: the median is 0.505
    assert choose_threshold(labels, probs) == pytest.approx(0.505)


def test_choose_threshold_respects_the_sensitivity_floor() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.4, 0.5, 0.3, 0.6, 0.7, 0.8, 0.9])
    # sensitivity >= 0.95 needs all five positives, so t <= 0.30; there the best Youden J
    # is 0.5 (specificity 1/2) for t in 0.21 .. 0.30 -> median 0.255
    assert choose_threshold(labels, probs) == pytest.approx(0.255)
    # allowing 0.8 sensitivity: J = 0.8 for t in 0.51 .. 0.60 -> median 0.555
    assert choose_threshold(labels, probs, min_sensitivity=0.8) == pytest.approx(0.555)


def test_choose_threshold_plateau_widens_the_choice() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.4, 0.5, 0.3, 0.6, 0.7, 0.8, 0.9])
    # a plateau of 0.26 also admits t in 0.41 .. 0.50 (J = 0.55) next to 0.51 .. 0.60 (0.8)
    assert choose_threshold(labels, probs, min_sensitivity=0.8, plateau=0.26) == \
        pytest.approx(0.505)
    # 0.3 reaches J = 0.5 too: t in 0.21 .. 0.30 joins, and the median of 30 moves to 0.455
    assert choose_threshold(labels, probs, min_sensitivity=0.8, plateau=0.3) == \
        pytest.approx(0.455)


def test_choose_threshold_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.array([1, 1]), np.array([0.2, 0.9]))


def test_fit_platt_recovers_a_known_temperature_and_bias() -> None:
    from pneumoscan.calibration import fit_platt

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 20_000)
    labels = (rng.random(20_000) < apply_temperature(logits, 1.5, 2.0)).astype(int)
    temperature, bias = fit_platt(logits, labels)
    assert temperature == pytest.approx(1.5, rel=0.05)
    assert bias == pytest.approx(2.0, abs=0.1)


def test_apply_temperature_with_a_bias() -> None:
    out = apply_temperature(np.array([0.0, 2.0]), 2.0, np.log(3.0))
    np.testing.assert_allclose(out, [0.75, 1 / (1 + np.exp(-(1 + np.log(3.0))))])


def test_threshold_for_sensitivity_is_the_highest_keeping_it() -> None:
    from pneumoscan.calibration import threshold_for_sensitivity

    labels = np.array([1, 1, 1, 1, 0, 0])
    probs = np.array([0.9, 0.8, 0.6, 0.3, 0.5, 0.1])
    assert threshold_for_sensitivity(labels, probs, 0.75) == pytest.approx(0.6)
    assert threshold_for_sensitivity(labels, probs, 1.0) == pytest.approx(0.3)
    assert threshold_for_sensitivity(labels, probs, 0.5) == pytest.approx(0.8)


def test_worst_case_threshold_keeps_the_sensitivity_on_every_set() -> None:
    from pneumoscan.calibration import worst_case_threshold

    labels = np.array([1, 1, 0, 0])
    sets = {"clean": (labels, np.array([0.9, 0.8, 0.2, 0.1])),
            "later period": (labels, np.array([0.7, 0.4, 0.3, 0.2]))}
    threshold, decided = worst_case_threshold(sets, 1.0)
    assert (threshold, decided) == (pytest.approx(0.4), "later period")
    for y, p in sets.values():
        assert (p[y == 1] >= threshold).all()
    with pytest.raises(ValueError, match="no validation sets"):
        worst_case_threshold({}, 0.9)


def test_balanced_platt_gives_the_probabilities_of_an_even_prevalence() -> None:
    from pneumoscan.calibration import fit_platt

    rng = np.random.default_rng(0)
    # 3 positives to 1 negative, logits N(+1, 1) and N(-1, 1): balanced, the point between
    # the two classes (0) is P = 0.5; unweighted, the 75 % prior lifts it
    labels = np.r_[np.ones(3000), np.zeros(1000)]
    logits = np.r_[rng.normal(1, 1, 3000), rng.normal(-1, 1, 1000)]
    t_bal, b_bal = fit_platt(logits, labels, balanced=True)
    t_raw, b_raw = fit_platt(logits, labels)
    assert apply_temperature(np.array([0.0]), t_bal, b_bal)[0] == pytest.approx(0.5, abs=0.03)
    assert apply_temperature(np.array([0.0]), t_raw, b_raw)[0] > 0.7
def test_the_operating_point_moves_up_when_shifted_normals_score_higher() -> None:
    clean = np.array([-3.0, -2.0, -2.5, -1.5, 2.0, 3.0, 2.5, 1.5])
    shifted = clean + np.array([2.5, 2.5, 2.5, 2.5, 0, 0, 0, 0])  # normals drift up
    temperature, _, threshold = fit_operating_point(
        LABELS, {"none": clean, "crop 84%": shifted}, min_sensitivity=0.95, plateau=0.02)
    *_, clean_threshold = fit_operating_point(LABELS, {"none": clean}, min_sensitivity=0.95,
                                              plateau=0.02)
    assert temperature > 0
    assert threshold > clean_threshold


def test_pooled_stacks_every_copy_and_the_clean_row_is_needed() -> None:
    labels, probs = pooled(LABELS, {"b": np.ones(8), "a": np.zeros(8)})
    np.testing.assert_array_equal(labels, np.concatenate([LABELS, LABELS]))
    np.testing.assert_array_equal(probs, np.r_[np.zeros(8), np.ones(8)])  # by name
    with pytest.raises(ValueError, match="clean row"):
        fit_operating_point(LABELS, {"crop 84%": np.zeros(8)}, min_sensitivity=0.9,
                            plateau=0.02)
