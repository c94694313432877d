"""Model files: safetensors + model.json (+ the scope statistics), round trips, mismatches,
and no pickles."""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from pneumoscan.errors import ModelFileError
from pneumoscan.modelfile import (
    CARD_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    ModelCard,
    drop_card_scope,
    load_model,
    load_scope,
    read_card,
    resolve_model_paths,
    save_model,
    save_scope,
    scope_path,
)
from pneumoscan.models import create_model
from pneumoscan.preprocessing import PreprocessConfig
from pneumoscan.scope import DistanceStatistics, ScopeStatistics, fit_scope_statistics


def _card(**changes: object) -> ModelCard:
    values = {"arch": "simple_cnn", "preprocessing": PreprocessConfig(image_size=32),
              "threshold": 0.37, "temperature": 1.7, "version": "test-1",
              "validation": {"auc": 0.9, "auc_ci95": [0.8, 0.95]}}
    return ModelCard(**{**values, **changes})  # type: ignore[arg-type]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(1)
    model = create_model("simple_cnn").eval()
    with torch.no_grad():  # give BatchNorm non-default statistics, so they must be saved
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return save_model(model, _card(), tmp_path / "model"), model


def test_round_trip_gives_identical_outputs(saved: tuple[Path, torch.nn.Module]) -> None:
    folder, original = saved
    assert {p.name for p in folder.iterdir()} == {WEIGHTS_NAME, CARD_NAME}
    loaded, card = load_model(folder)
    assert not loaded.training
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))
    assert card == _card()
    assert (card.threshold, card.temperature, card.preprocessing.image_size) == (0.37, 1.7, 32)
    assert card.class_names == ["NORMAL", "PNEUMONIA"]
    assert card.format_version == FORMAT_VERSION


def test_paths_a_folder_a_weights_file_or_a_card(saved: tuple[Path, torch.nn.Module],
                                                 tmp_path: Path) -> None:
    folder, _ = saved
    expected = (folder / WEIGHTS_NAME, folder / CARD_NAME)
    assert resolve_model_paths(folder) == expected
    assert resolve_model_paths(folder / WEIGHTS_NAME) == expected  # card found beside it
    # the shipped form: NAME.safetensors + NAME.json
    shutil.copy(folder / WEIGHTS_NAME, tmp_path / "mine.safetensors")
    shutil.copy(folder / CARD_NAME, tmp_path / "mine.json")
    assert resolve_model_paths(tmp_path / "mine.json") == (tmp_path / "mine.safetensors",
                                                           tmp_path / "mine.json")
    assert read_card(tmp_path / "mine.safetensors").version == "test-1"


def test_missing_parts_name_the_missing_file(saved: tuple[Path, torch.nn.Module]) -> None:
    folder, _ = saved
    (folder / CARD_NAME).unlink()
    with pytest.raises(ModelFileError, match=CARD_NAME):
        load_model(folder)
    with pytest.raises(ModelFileError, match="nowhere"):
        load_model(folder / "nowhere")


def test_card_that_does_not_match_the_weights(saved: tuple[Path, torch.nn.Module]) -> None:
    folder, _ = saved
    card = json.loads((folder / CARD_NAME).read_text())
    card["arch"] = "resnet18"
    (folder / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="resnet18"):
        load_model(folder)


def test_weights_with_a_missing_tensor_are_refused(saved: tuple[Path, torch.nn.Module]) -> None:
    from safetensors.torch import load_file, save_file

    folder, _ = saved
    state = load_file(str(folder / WEIGHTS_NAME))
    del state["head.bias"]
    save_file(state, str(folder / WEIGHTS_NAME))
    with pytest.raises(ModelFileError, match=r"head\.bias"):
        load_model(folder)


@pytest.mark.parametrize("change", [{"preprocessing": None}, {"format_version": 99},
                                    {"preprocessing": {"resize": "crop"}}])
def test_invalid_cards_are_refused(saved: tuple[Path, torch.nn.Module],
                                   change: dict[str, object]) -> None:
    folder, _ = saved
    card = json.loads((folder / CARD_NAME).read_text())
    card.update(change)
    if card["preprocessing"] is None:
        del card["preprocessing"]
    (folder / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(ModelFileError):
        read_card(folder)


def test_card_that_is_not_json(saved: tuple[Path, torch.nn.Module]) -> None:
    folder, _ = saved
    (folder / CARD_NAME).write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_card(folder)


class _Exploit:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (self.marker, "pwned"))  # type: ignore[return-value]


def test_loading_never_unpickles(saved: tuple[Path, torch.nn.Module], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = saved

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model file was unpickled")

    # a valid model loads without pickle or torch.load being touched
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    load_model(folder)
    monkeypatch.undo()

    # a pickle posing as the weights is refused, and its payload never runs
    marker = tmp_path / "marker.txt"
    (folder / WEIGHTS_NAME).write_bytes(pickle.dumps({"head.weight": _Exploit(marker)}))
    with pytest.raises(ModelFileError, match="safetensors"):
        load_model(folder)
    assert not marker.exists()


def test_nan_metrics_survive_the_card(tmp_path: Path) -> None:
    model = create_model("simple_cnn")
    folder = save_model(model, _card(validation={"cause_auc": float("nan")}), tmp_path)
    value = read_card(folder).validation["cause_auc"]
    assert value != value  # NaN


# ---------------------------------------------------------------- scope statistics


def _scope_statistics(seed: int = 0) -> ScopeStatistics:
    rng = np.random.default_rng(seed)
    return fit_scope_statistics(rng.normal(size=(60, 8)), rng.normal(size=(60, 576)))


def test_scope_statistics_round_trip_beside_the_weights(
        saved: tuple[Path, torch.nn.Module]) -> None:
    folder, _ = saved
    assert load_scope(folder) is None  # not fitted
    statistics = _scope_statistics()
    path = save_scope(statistics, folder)
    assert path == scope_path(folder) == folder / "model.scope.safetensors"
    assert {p.name for p in folder.iterdir()} == {WEIGHTS_NAME, CARD_NAME, path.name}
    loaded = load_scope(folder)
    assert loaded is not None
    for part in ("features", "layout"):
        mine, theirs = getattr(statistics, part), getattr(loaded, part)
        for item in fields(DistanceStatistics):
            np.testing.assert_array_equal(getattr(theirs, item.name), getattr(mine, item.name))
    vector = np.random.default_rng(1).normal(size=8)
    assert loaded.features.ratio(vector) == statistics.features.ratio(vector)
    assert "scope" not in json.loads((folder / CARD_NAME).read_text())


def test_scope_statistics_of_the_shipped_form(saved: tuple[Path, torch.nn.Module],
                                              tmp_path: Path) -> None:
    folder, _ = saved
    shutil.copy(folder / WEIGHTS_NAME, tmp_path / "mine.safetensors")
    shutil.copy(folder / CARD_NAME, tmp_path / "mine.json")
    path = save_scope(_scope_statistics(), tmp_path / "mine.json")
    assert path == tmp_path / "mine.scope.safetensors"
    assert load_scope(tmp_path / "mine.safetensors") is not None


def test_scope_statistics_of_other_weights_are_ignored(saved: tuple[Path, torch.nn.Module],
                                                       caplog: pytest.LogCaptureFixture,
                                                       ) -> None:
    """Weights replaced, statistics not refitted: the model is unfitted, and says how to fix
    it, rather than judging with another network's statistics."""
    from safetensors.torch import load_file, save_file

    folder, _ = saved
    save_scope(_scope_statistics(), folder)
    state = load_file(str(folder / WEIGHTS_NAME))
    state["head.bias"] = state["head.bias"] + 1.0
    save_file(state, str(folder / WEIGHTS_NAME))
    assert load_scope(folder) is None
    assert f"pneumoscan fit-scope {folder} --data DATA" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "other format", "missing tensor"])
def test_unreadable_scope_statistics_are_refused(saved: tuple[Path, torch.nn.Module],
                                                 damage: str) -> None:
    from safetensors.numpy import load_file, save_file

    folder, _ = saved
    path = save_scope(_scope_statistics(), folder)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(path))
        if damage == "other format":
            metadata["format"] = "something else"
        else:
            del tensors["layout.components"]
        save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ModelFileError, match="fit-scope"):
        load_scope(folder)


def test_an_old_card_with_scope_statistics_inside_still_loads(
        saved: tuple[Path, torch.nn.Module]) -> None:
    folder, _ = saved
    card = json.loads((folder / CARD_NAME).read_text())
    old = {**card, "scope": {"mean": [0.0] * 4, "max_distance": 3.0}}  # the layout before
    (folder / CARD_NAME).write_text(json.dumps(old))
    assert read_card(folder).version == "test-1"
    assert load_scope(folder) is None
    assert drop_card_scope(folder)  # what fit-scope does after fitting
    assert json.loads((folder / CARD_NAME).read_text()) == card
    assert not drop_card_scope(folder)
