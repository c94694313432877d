"""The model shipped inside the package: present, loadable without pickle, consistent with
its model.json, and clearly separating shared pneumonia images from normal ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from pneumoscan.modelfile import default_model_path, load_model, read_card


@pytest.fixture(scope="module")
def shipped() -> Path:
    path = default_model_path()
    if not path.is_file():
        pytest.fail(f"the shipped model is missing at {path}")
    return path


def test_shipped_weights_are_safetensors_within_size_budget(shipped: Path) -> None:
    assert shipped.suffix == ".safetensors"
    assert shipped.stat().st_size <= 25 * 1024 * 1024
    with safe_open(str(shipped), framework="numpy") as handle:
        assert "head.weight" in handle.keys()  # noqa: SIM118 (safe_open is not a dict)


def test_shipped_card_matches_weights(shipped: Path) -> None:
    card = read_card(None)
    raw = json.loads(shipped.with_suffix(".json").read_text())
    assert raw["arch"] == card.arch
    model, loaded_card = load_model(None)  # strict load: every tensor matches the card's arch
    assert loaded_card == card
    assert card.class_names == ["NORMAL", "PNEUMONIA"]
    assert 0.0 < card.threshold < 1.0
    assert card.temperature > 0
    assert card.validation["auc"] > 0.95
    head = model.head.weight.detach().numpy()
    with safe_open(str(shipped), framework="numpy") as handle:
        np.testing.assert_array_equal(handle.get_tensor("head.weight"), head)


def test_shipped_model_separates_shared_pneumonia_from_normal(
        shared_normal_images: list[Path], shared_pneumonia_images: list[Path]) -> None:
    from pneumoscan import Predictor

    predictor = Predictor.load(backend="torch")
    normal = [predictor.predict(p, heatmap=False).probability for p in shared_normal_images]
    pneumonia = [predictor.predict(p, heatmap=False).probability
                 for p in shared_pneumonia_images]
    assert min(pneumonia) > max(normal)
    assert np.mean(pneumonia) - np.mean(normal) > 0.5
