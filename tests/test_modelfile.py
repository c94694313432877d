"""Model files: found once, safetensors + model.json round trips, mismatches, no pickles."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import torch

from pneumoscan.errors import ModelFileError
from pneumoscan.modelcard import CARD_NAME, ModelCard
from pneumoscan.modelfile import (
    WEIGHTS_NAME,
    ModelFiles,
    load_model,
    resolve_model,
    save_model,
)
from pneumoscan.models import create_model
from pneumoscan.predictor import Predictor
from pneumoscan.preprocessing import PreprocessConfig


def _card(**changes: object) -> ModelCard:
    values = {"arch": "simple_cnn", "preprocessing": PreprocessConfig(image_size=32),
              "threshold": 0.37, "temperature": 1.7, "version": "test-1"}
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


def test_paths_a_folder_a_weights_file_or_a_card(saved: tuple[Path, torch.nn.Module],
                                                 tmp_path: Path) -> None:
    folder, _ = saved
    for given in (folder, folder / WEIGHTS_NAME, folder / CARD_NAME):  # card found beside
        files = resolve_model(given)
        assert (files.weights, files.card_path, files.source) == (
            folder / WEIGHTS_NAME, folder / CARD_NAME, given)
        assert files.beside(".onnx") == folder / "model.onnx"
    # the shipped form: NAME.safetensors + NAME.json
    shutil.copy(folder / WEIGHTS_NAME, tmp_path / "mine.safetensors")
    shutil.copy(folder / CARD_NAME, tmp_path / "mine.json")
    files = resolve_model(tmp_path / "mine.json")
    assert (files.weights, files.card_path) == (tmp_path / "mine.safetensors",
                                                tmp_path / "mine.json")
    assert files.beside(".scope.safetensors") == tmp_path / "mine.scope.safetensors"
    assert resolve_model(tmp_path / "mine.safetensors").card.version == "test-1"
    assert resolve_model(files) is files  # resolved once, passed down as it is
    assert resolve_model(None).source is None and resolve_model(None).weights.is_file()


def test_the_digest_is_the_weights_sha256(saved: tuple[Path, torch.nn.Module]) -> None:
    folder, _ = saved
    expected = hashlib.sha256((folder / WEIGHTS_NAME).read_bytes()).hexdigest()
    assert resolve_model(folder).weights_sha256 == expected


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
    Predictor.load(folder, backend="torch")
    monkeypatch.undo()

    # a pickle posing as the weights is refused, and its payload never runs
    marker = tmp_path / "marker.txt"
    (folder / WEIGHTS_NAME).write_bytes(pickle.dumps({"head.weight": _Exploit(marker)}))
    with pytest.raises(ModelFileError, match="safetensors"):
        load_model(folder)
    with pytest.raises(ModelFileError, match="safetensors"):
        Predictor.load(folder, backend="torch")
    assert not marker.exists()


def test_loading_finds_reads_and_hashes_the_model_once(shipped_model: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Predictor.load on the shipped model: the ONNX export, the scope statistics and the
    population classifier are each checked against the weights' SHA-256, which is computed
    once; the files are found once and the card read once."""
    pytest.importorskip("onnxruntime")
    hashed: list[str] = []
    read: list[str] = []
    resolved: list[Path | None] = []
    file_digest, read_text, init = hashlib.file_digest, Path.read_text, ModelFiles.__init__

    def counting_digest(handle: BinaryIO, digest: str) -> Any:
        hashed.append(Path(handle.name).name)
        return file_digest(handle, digest)

    def counting_read(self: Path, *args: Any, **kwargs: Any) -> str:
        read.append(self.name)
        return read_text(self, *args, **kwargs)

    def counting_init(self: ModelFiles, source: Path | None, *args: Any) -> None:
        resolved.append(source)
        init(self, source, *args)

    monkeypatch.setattr(hashlib, "file_digest", counting_digest)
    monkeypatch.setattr(Path, "read_text", counting_read)
    monkeypatch.setattr(ModelFiles, "__init__", counting_init)
    predictor = Predictor.load(shipped_model, backend="onnx")
    monkeypatch.undo()
    assert predictor.backend.name == "onnx"
    assert predictor.scope is not None and predictor.population is not None
    assert hashed == [shipped_model.name]
    assert [name for name in read if name.endswith(".json")] == [CARD_NAME.replace(
        "model", shipped_model.stem)]
    assert resolved == [shipped_model]
