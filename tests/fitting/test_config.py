"""TrainConfig: TOML in, TOML out, unknown keys named."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from pneumoscan.fitting.augmentation import AugmentConfig
from pneumoscan.fitting.config import TrainConfig, config_from_dict, dump_config, load_config

REPO = Path(__file__).resolve().parents[2]


def test_dump_then_load_is_the_same_config(tmp_path: Path) -> None:
    config = replace(TrainConfig(), arch='odd"name\\x', pretrained=False, lr=1e-5, epochs=3,
                     augment=AugmentConfig(hflip=True, noise=0.0))
    path = tmp_path / "config.toml"
    path.write_text(dump_config(config))
    assert load_config(path) == config
    assert tomllib.loads(path.read_text())["augment"]["hflip"] is True


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('arch = "simple_cnn"\nepochs = 2\n[augment]\nrotate_degrees = 0.0\n')
    config = load_config(path)
    assert (config.arch, config.epochs, config.batch_size) == ("simple_cnn", 2, 32)
    assert config.augment == AugmentConfig(rotate_degrees=0.0)


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ValueError, match="learning_rate"):
        config_from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="vflip"):
        config_from_dict({"augment": {"vflip": True}})


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        load_config("nope.toml")


def test_overrides_skip_none() -> None:
    config = TrainConfig().with_overrides(epochs=2, arch=None, seed=5)
    assert (config.epochs, config.arch, config.seed) == (2, TrainConfig().arch, 5)


def test_shipped_default_config_loads() -> None:
    path = REPO / "configs" / "default.toml"
    config = load_config(path)
    written = tomllib.loads(path.read_text())
    for key, value in written.items():
        if key != "augment":
            assert getattr(config, key) == value, key
    for key, value in written.get("augment", {}).items():
        assert getattr(config.augment, key) == value, key
    assert config.arch == "efficientnet_lite0_s16" and config.pretrained


def test_adult_folders_are_a_list_and_an_older_single_folder_is_one(tmp_path: Path) -> None:
    config = replace(TrainConfig(), adults=("../a/adult_nih", "../a/adult_other"))
    path = tmp_path / "config.toml"
    path.write_text(dump_config(config))
    assert load_config(path) == config
    assert tomllib.loads(path.read_text())["adults"] == list(config.adults)
    assert config_from_dict({"adults": "../a/adult_nih"}).adults == ("../a/adult_nih",)
    assert config_from_dict({"adults": ""}).adults == ()  # written before: none
