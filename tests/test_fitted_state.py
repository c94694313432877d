"""The store of fitted state beside the weights: the scope statistics' round trip, state
made for other weights ignored, unreadable state refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from pneumoscan.errors import ModelFileError
from pneumoscan.fitted_state import SCOPE, load_scope, save_scope
from pneumoscan.modelcard import CARD_NAME
from pneumoscan.modelfile import WEIGHTS_NAME, resolve_model
from pneumoscan.scope import DistanceStatistics, ScopeStatistics, fit_scope_statistics


def _scope_statistics(seed: int = 0) -> ScopeStatistics:
    rng = np.random.default_rng(seed)
    return fit_scope_statistics(rng.normal(size=(60, 8)), rng.normal(size=(60, 576)))


@pytest.fixture
def folder(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def test_scope_statistics_round_trip_beside_the_weights(folder: Path) -> None:
    assert load_scope(folder) is None  # not fitted
    statistics = _scope_statistics()
    path = save_scope(statistics, folder)
    assert path == SCOPE.path(folder) == folder / "model.scope.safetensors"
    assert {p.name for p in folder.iterdir()} == {WEIGHTS_NAME, CARD_NAME, path.name}
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == SCOPE.format
    assert metadata["weights_sha256"] == resolve_model(folder).weights_sha256
    loaded = load_scope(folder)
    assert loaded is not None
    for part in ("features", "layout"):
        mine, theirs = getattr(statistics, part), getattr(loaded, part)
        for item in fields(DistanceStatistics):
            np.testing.assert_array_equal(getattr(theirs, item.name), getattr(mine, item.name))
    vector = np.random.default_rng(1).normal(size=8)
    assert loaded.features.ratio(vector) == statistics.features.ratio(vector)
    assert "scope" not in json.loads((folder / CARD_NAME).read_text())


def test_scope_statistics_of_the_shipped_form(folder: Path, tmp_path: Path) -> None:
    shutil.copy(folder / WEIGHTS_NAME, tmp_path / "mine.safetensors")
    shutil.copy(folder / CARD_NAME, tmp_path / "mine.json")
    path = save_scope(_scope_statistics(), tmp_path / "mine.json")
    assert path == tmp_path / "mine.scope.safetensors"
    assert load_scope(tmp_path / "mine.safetensors") is not None


def test_scope_statistics_of_other_weights_are_ignored(folder: Path,
                                                       caplog: pytest.LogCaptureFixture,
                                                       ) -> None:
    """Weights replaced, statistics not refitted: the model is unfitted, and says how to fix
    it, rather than judging with another network's statistics."""
    from safetensors.torch import load_file, save_file

    save_scope(_scope_statistics(), folder)
    state = load_file(str(folder / WEIGHTS_NAME))
    state["head.bias"] = state["head.bias"] + 1.0
    save_file(state, str(folder / WEIGHTS_NAME))
    assert load_scope(folder) is None
    assert f"pneumoscan fit-scope {folder} --data DATA" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "other format", "missing tensor"])
def test_unreadable_scope_statistics_are_refused(folder: Path, damage: str) -> None:
    from safetensors.numpy import load_file, save_file

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


def test_an_old_card_with_scope_statistics_inside_is_unfitted(folder: Path) -> None:
    card = json.loads((folder / CARD_NAME).read_text())
    old = {**card, "scope": {"mean": [0.0] * 4, "max_distance": 3.0}}  # the layout before
    (folder / CARD_NAME).write_text(json.dumps(old))
    assert load_scope(folder) is None
