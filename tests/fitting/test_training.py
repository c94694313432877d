"""The training loop on a tiny synthetic data set: outputs, resume equivalence, guards."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import make_synthetic_dataset
from pneumoscan import __version__
from pneumoscan.dataset import Sample, discover, fingerprint
from pneumoscan.errors import DataLayoutError
from pneumoscan.fitting.config import TrainConfig, load_config
from pneumoscan.fitting.training import HISTORY_COLUMNS, learning_rate, loss_terms, train
from pneumoscan.image_cache import load_resized
from pneumoscan.modelfile import load_model, resolve_model

CONFIG = TrainConfig(arch="simple_cnn", pretrained=False, image_size=32, epochs=3,
                     batch_size=8, patience=10, threads=1, lr=3e-3)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def run_a(data_root: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 3-epoch run."""
    return train(CONFIG, data_root, tmp_path_factory.mktemp("run") / "a", cache_dir=cache_dir)


def _history(folder: Path) -> list[dict[str, str]]:
    with (folder / "history.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_training_writes_a_complete_model_folder(run_a: Path, data_root: Path) -> None:
    for name in ("model.safetensors", "model.json", "config.toml", "history.csv",
                 "curves.png", "checkpoint.safetensors", "checkpoint.json"):
        assert (run_a / name).is_file(), name
    assert (run_a / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_config(run_a / "config.toml") == CONFIG

    card = resolve_model(run_a).card
    assert card.arch == "simple_cnn" and card.preprocessing.image_size == 32
    assert 0.0 < card.threshold < 1.0
    assert 0.05 <= card.temperature <= 20.0 and 0.05 <= card.cause_temperature <= 20.0
    assert card.package_version == __version__
    assert card.data_fingerprint == fingerprint(discover(data_root).splits["train"])
    assert card.training["epochs_run"] == 3
    assert card.training["n_train"] + card.training["n_val"] == 48
    validation = card.validation
    for key in ("n", "auc", "auc_ci95", "sensitivity", "specificity", "brier", "ece",
                "tp", "fp", "tn", "fn", "cause_auc", "cause_n"):
        assert key in validation, key
    assert validation["n"] == card.training["n_val"]
    assert validation["tp"] + validation["fp"] + validation["tn"] + validation["fn"] == \
        validation["n"]
    assert validation["threshold"] == card.threshold
    assert validation["n_positive"] > 0 and validation["n_negative"] > 0

    history = _history(run_a)
    assert list(history[0]) == list(HISTORY_COLUMNS)
    assert [int(row["epoch"]) for row in history] == [1, 2, 3]
    assert all(math.isfinite(float(row["train_loss"])) for row in history)
    # the weights saved are those of the best validation AUC epoch
    best = max(range(3), key=lambda i: float(history[i]["val_auc"]))
    assert card.training["best_epoch"] == best + 1

    model, _ = load_model(run_a)
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 2)


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_uninterrupted(run_a: Path, data_root: Path,
                                                          cache_dir: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "b"
    train(CONFIG, data_root, out, cache_dir=cache_dir, stop_after_epoch=1)
    assert not (out / "model.json").exists()  # "killed" before the end
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 1
    assert len(_history(out)) == 1

    with pytest.raises(FileExistsError, match="--resume"):
        train(CONFIG, data_root, out, cache_dir=cache_dir)  # would overwrite the run

    train(CONFIG, data_root, out, cache_dir=cache_dir, resume=True)
    a, b = load_file(str(run_a / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)

    def without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert without_time(_history(out)) == without_time(_history(run_a))
    card_a, card_b = resolve_model(run_a).card, resolve_model(out).card
    assert card_b.threshold == card_a.threshold
    assert card_b.temperature == pytest.approx(card_a.temperature, rel=1e-6)
    assert card_b.training["best_epoch"] == card_a.training["best_epoch"]


def test_resume_without_a_checkpoint(data_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(CONFIG, data_root, tmp_path / "fresh", cache_dir=cache_dir, resume=True)
    assert not (tmp_path / "fresh").exists()


def test_one_class_is_refused_before_any_work(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "data", n_patients=8, images_per_patient=1)
    for image in (root / "train" / "PNEUMONIA").iterdir():
        image.unlink()
    (root / "train" / "PNEUMONIA").rmdir()
    with pytest.raises(DataLayoutError, match="no PNEUMONIA/ images"):
        train(CONFIG, root, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    config = TrainConfig(lr=1.0, epochs=2, warmup_epochs=0.5)
    steps = 10  # per epoch: warm-up 5 steps, then cosine over the other 15
    assert [learning_rate(config, s, steps) for s in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert learning_rate(config, 5, steps) == pytest.approx(1.0)
    assert learning_rate(config, 5 + 7.5, steps) == pytest.approx(0.5)  # half-way
    assert learning_rate(config, 20, steps) == pytest.approx(0.0, abs=1e-12)


def test_loss_terms_by_hand() -> None:
    config = TrainConfig(label_smoothing=0.0, cause_loss_weight=0.5)
    logits = torch.zeros(4, 2)  # sigmoid 0.5 everywhere: each BCE term is log 2
    labels = torch.tensor([1, 1, 0, 0])
    causes = torch.tensor([1, 0, -1, -1])  # cause known for the two pneumonias only
    loss = loss_terms(logits, labels, causes, config, torch.tensor(3.0), torch.tensor(1.0))
    # pneumonia: positives weighted 3 -> (3 + 3 + 1 + 1) / 4 log 2; cause: 0.5 * log 2
    assert float(loss) == pytest.approx((2.0 + 0.5) * math.log(2), rel=1e-6)
    smoothed = TrainConfig(label_smoothing=0.1, cause_loss_weight=0.0)
    assert float(loss_terms(logits, labels, causes, smoothed, torch.tensor(1.0),
                            torch.tensor(1.0))) == pytest.approx(math.log(2), rel=1e-6)


def test_consistency_pulls_an_image_and_its_copy_together() -> None:
    logits = torch.tensor([[1.0, 0.0], [-2.0, 0.5]], requires_grad=True)
    copies = torch.tensor([[0.5, 3.0], [-2.0, -1.0]])  # the cause logit is not compared
    labels, causes = torch.tensor([1, 0]), torch.tensor([-1, -1])
    one = torch.tensor(1.0)
    config = replace(CONFIG, label_smoothing=0.0, consistency=2.0)
    plain = loss_terms(logits, labels, causes, config, one, one)
    paired = loss_terms(logits, labels, causes, config, one, one, copies=copies)
    assert float((paired - plain).detach()) == pytest.approx(2.0 * (0.5 ** 2 + 0) / 2)
    paired.backward()
    assert logits.grad is not None and float(logits.grad[0, 0]) > float(
        torch.autograd.grad(loss_terms(logits, labels, causes, config, one, one), logits)[0][0, 0])
    off = replace(config, consistency=0.0)
    with torch.no_grad():
        assert float(loss_terms(logits, labels, causes, off, one, one, copies=copies)) == \
            pytest.approx(float(plain))


def test_a_run_with_consistency_trains_on_the_pairs(data_root: Path,
                                                    cache_dir: Path, tmp_path: Path) -> None:
    config = replace(CONFIG, epochs=1, consistency=1.0)
    out = train(config, data_root, tmp_path / "paired", cache_dir=cache_dir)
    assert load_config(out / "config.toml").consistency == 1.0
    plain = train(replace(CONFIG, epochs=1), data_root, tmp_path / "plain", cache_dir=cache_dir)
    a, b = load_file(str(plain / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert any(not torch.equal(a[key], b[key]) for key in a)  # the term is in the gradient


def test_image_cache_skips_unreadable_and_is_reused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "IM-0001-0001.png"
    Image.fromarray(np.full((20, 10), 100, np.uint8)).save(good)
    bad = tmp_path / "IM-0002-0001.jpeg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    samples = [Sample(bad, 0, "im-0002"), Sample(good, 0, "im-0001")]
    pixels, unreadable = load_resized(samples, 8, cache_dir=tmp_path / "cache")
    assert pixels.shape == (1, 8, 8) and pixels.dtype == np.uint8
    assert int(pixels[0, 0, 0]) == 100 and unreadable == [0]
    assert len(list((tmp_path / "cache").glob("*_8px.npy"))) == 1

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr("pneumoscan.image_cache.load_image", no_decoding)
    cached, cached_bad = load_resized(samples, 8, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(cached, pixels)
    assert cached_bad == [0]


@pytest.mark.slow
def test_the_site_ready_recipe_holds_out_the_edges_and_chooses_by_the_worst_case(
        cache_dir: Path, tmp_path: Path) -> None:
    from pneumoscan.dataset import training_split
    from pneumoscan.training_files import load_training_files

    data = make_synthetic_dataset(tmp_path / "data", n_patients=40)
    config = replace(CONFIG, epochs=1, protocol_fraction=0.1, edge_blocks=1,
                     flip_average=True, source_size=48, threshold_rule="worst-case",
                     min_sensitivity=0.9)
    out = train(config, data, tmp_path / "run", cache_dir=cache_dir)
    model, card = load_model(out)
    assert card.flip_average and model.flip_average
    assert card.preprocessing.source_size == 48
    assert "decided by" in card.threshold_rule and "edge of time" in card.threshold_rule
    held = card.validation["held_out"]
    assert set(held) == {"out of protocol", "edge of time"}
    split = training_split(card, data)
    assert split.edge and held["edge of time"]["n"] == len(split.edge)
    # the threshold keeps the sensitivity on each held-out set (ties aside: a 0.005 grid)
    for name in held:
        assert held[name]["sensitivity"] >= 0.9 or held[name]["threshold"] < 0.01
    # edge films are recorded as such, so that evaluate warns on them
    files = load_training_files(out)
    assert files is not None and files.count("edge") == len(split.edge)
