"""The model card (model.json): round trip, invalid cards refused, the old layout cleaned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pneumoscan.errors import ModelFileError
from pneumoscan.modelcard import (
    CARD_NAME,
    FORMAT_VERSION,
    ModelCard,
    drop_card_scope,
    load_card,
    write_card,
)
from pneumoscan.preprocessing import PreprocessConfig


def _card(**changes: object) -> ModelCard:
    values = {"arch": "simple_cnn", "preprocessing": PreprocessConfig(image_size=32),
              "threshold": 0.37, "temperature": 1.7, "version": "test-1",
              "validation": {"auc": 0.9, "auc_ci95": [0.8, 0.95]}}
    return ModelCard(**{**values, **changes})  # type: ignore[arg-type]


@pytest.fixture
def card_path(tmp_path: Path) -> Path:
    path = tmp_path / CARD_NAME
    write_card(_card(), path)
    return path


def test_round_trip(card_path: Path) -> None:
    card = load_card(card_path)
    assert card == _card()
    assert (card.threshold, card.temperature, card.preprocessing.image_size) == (0.37, 1.7, 32)
    assert card.class_names == ["NORMAL", "PNEUMONIA"]
    assert card.format_version == FORMAT_VERSION


@pytest.mark.parametrize("change", [{"preprocessing": None}, {"format_version": 99},
                                    {"preprocessing": {"resize": "crop"}}])
def test_invalid_cards_are_refused(card_path: Path, change: dict[str, object]) -> None:
    card = json.loads(card_path.read_text())
    card.update(change)
    if card["preprocessing"] is None:
        del card["preprocessing"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError):
        load_card(card_path)


def test_card_that_is_not_json(card_path: Path) -> None:
    card_path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_card(card_path)


def test_nan_metrics_survive_the_card(tmp_path: Path) -> None:
    write_card(_card(validation={"cause_auc": float("nan")}), tmp_path / CARD_NAME)
    value = load_card(tmp_path / CARD_NAME).validation["cause_auc"]
    assert value != value  # NaN


def test_an_old_card_with_scope_statistics_inside_still_loads(card_path: Path) -> None:
    card = json.loads(card_path.read_text())
    old = {**card, "scope": {"mean": [0.0] * 4, "max_distance": 3.0}}  # the layout before
    card_path.write_text(json.dumps(old))
    assert load_card(card_path).version == "test-1"
    assert drop_card_scope(card_path)  # what fit-scope does after fitting
    assert json.loads(card_path.read_text()) == card
    assert not drop_card_scope(card_path)
