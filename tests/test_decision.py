"""The decision rule shared by the Predictor, evaluate and the ONNX parity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumoscan.decision import CAUSE_THRESHOLD, decide, is_positive
from pneumoscan.modelcard import ModelCard
from pneumoscan.preprocessing import PreprocessConfig


def _card(threshold: float = 0.5, temperature: float = 2.0,
          cause_temperature: float = 1.0) -> ModelCard:
    return ModelCard(arch="x", preprocessing=PreprocessConfig(), threshold=threshold,
                     temperature=temperature, cause_temperature=cause_temperature)


def test_decide_by_hand() -> None:
    logits = np.array([[0.1, 3.0],   # P = sigmoid(0.05) = 0.5125 >= 0.5: pneumonia, bacterial
                       [-0.1, 3.0],  # P = 0.4875: normal, so no cause (-1)
                       [4.0, -1.0]], np.float32)  # P = sigmoid(2) = 0.8808: pneumonia, viral
    decisions = decide(logits, _card())
    np.testing.assert_allclose(decisions.probability, [0.512497, 0.487503, 0.880797],
                               atol=1e-6)
    np.testing.assert_allclose(decisions.cause_probability, [0.952574, 0.952574, 0.268941],
                               atol=1e-6)
    np.testing.assert_array_equal(decisions.label_index, [1, 0, 1])
    np.testing.assert_array_equal(decisions.cause_index, [1, -1, 0])


def test_thresholds_are_inclusive_and_the_cause_has_its_own_temperature() -> None:
    # logit 0 with any temperature is P = 0.5: a threshold of 0.5 makes it pneumonia
    decisions = decide(np.zeros((1, 2)), _card(threshold=0.5))
    assert decisions.positive.tolist() == [True]
    assert decisions.cause_probability.tolist() == [CAUSE_THRESHOLD]
    assert decisions.cause_index.tolist() == [1]  # 0.5 >= 0.5: bacterial
    # cause logit -1: sigmoid(-1 / 4) = 0.4378 with T = 4, sigmoid(-1) = 0.2689 with T = 1
    cooled = decide(np.array([[5.0, -1.0]]), _card(cause_temperature=4.0))
    assert cooled.cause_probability[0] == pytest.approx(0.437823, abs=1e-6)
    assert is_positive(0.3, 0.3) and not is_positive(0.2999, 0.3)


def test_predictor_prediction_agrees_with_decide(tiny_model_dir: Path,
                                                  shared_normal_images: list[Path]) -> None:
    """The Predictor reports exactly what decide() says for its own logits."""
    from pneumoscan.imaging import load_image
    from pneumoscan.predictor import Predictor
    from pneumoscan.preprocessing import normalize, resize

    predictor = Predictor.load(tiny_model_dir, backend="torch")
    card = predictor.card
    for threshold in (0.0, 1.01):  # everything pneumonia, then nothing
        card.threshold = threshold
        prediction = predictor.predict(shared_normal_images[0], heatmap=False)
        batch = normalize(resize(load_image(shared_normal_images[0]),
                                 card.preprocessing.image_size), card.preprocessing)[None]
        expected = decide(predictor.backend.run(batch)[0], card)
        assert prediction.probability == pytest.approx(expected.probability[0], abs=1e-12)
        assert prediction.label == card.class_names[expected.label_index[0]]
        assert prediction.is_pneumonia == bool(expected.positive[0])
        if expected.positive[0]:
            assert prediction.cause == card.cause_names[expected.cause_index[0]]
        else:
            assert prediction.cause is None and prediction.cause_probability is None
