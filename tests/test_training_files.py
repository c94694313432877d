"""Digests of a model's training files: recording, storage beside the weights, overlap."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.dataset import Sample, TrainingSplit, discover, split_for_training
from pneumoscan.errors import ModelFileError
from pneumoscan.training_files import (
    DIGEST_BYTES,
    ROLES,
    TRAINING_FILES,
    TrainingFiles,
    count_overlap,
    file_digest,
    find_overlap,
    load_training_files,
    overlap_warnings,
    record_split,
    save_training_files,
)


def _split(data: Path) -> TrainingSplit:
    return split_for_training(discover(data).splits["train"], 0.25, 3, 0.2)


def test_file_digest_is_the_start_of_the_sha256(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"chest")
    assert file_digest(path) == hashlib.sha256(b"chest").digest()[:DIGEST_BYTES]


def test_overlap_is_found_by_content_not_by_name(synthetic_dataset: Path,
                                                 tmp_path: Path) -> None:
    split = _split(synthetic_dataset)
    files = record_split(split, "abc")
    assert files.digests.shape == (48, DIGEST_BYTES)
    assert [files.count(role) for role in ROLES] == [
        len(split.train), len(split.validation), len(split.protocol), 0, 0]
    renamed = tmp_path / "renamed.jpeg"
    shutil.copy(split.validation[0].path, renamed)
    reencoded = tmp_path / "reencoded.png"  # other bytes: not recognised (documented)
    Image.open(split.train[0].path).save(reencoded)
    other = tmp_path / "other.jpeg"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(other)
    roles = find_overlap(files, [split.train[1].path, renamed, reencoded, other,
                                 split.protocol[0].path])
    assert roles == ["training", "validation", "", "", "protocol"]
    assert count_overlap(roles) == {"training": 1, "validation": 1, "protocol": 1,
                                    "edge": 0, "calibration": 0}


def test_a_file_on_two_sides_counts_as_training(tmp_path: Path) -> None:
    path = tmp_path / "duplicate.png"
    path.write_bytes(b"the same bytes under two names in the data")
    digest = np.frombuffer(file_digest(path), np.uint8)
    files = TrainingFiles(np.stack([digest, digest]), np.array([1, 0], np.uint8))
    assert find_overlap(files, [path]) == ["training"]


def test_warnings_name_only_the_sides_found() -> None:
    warnings = overlap_warnings({"training": 3, "validation": 0, "protocol": 2}, 10)
    assert len(warnings) == 2
    assert warnings[0].startswith("3 of the 10 evaluated images are images this model was "
                                  "trained on")
    assert "out-of-protocol" in warnings[1]
    assert overlap_warnings({"training": 0, "validation": 0, "protocol": 0}, 10) == []


def test_saved_beside_the_weights_and_tied_to_them(tiny_model_dir: Path, tmp_path: Path,
                                                   synthetic_dataset: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    assert load_training_files(model) is None  # none recorded
    files = record_split(_split(synthetic_dataset), "fingerprint")
    path = save_training_files(files, model)
    assert path == model / "model.training-files.safetensors" == TRAINING_FILES.path(model)
    loaded = load_training_files(model)
    assert loaded is not None and loaded.data_fingerprint == "fingerprint"
    np.testing.assert_array_equal(loaded.digests, files.digests)
    np.testing.assert_array_equal(loaded.roles, files.roles)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")  # other weights: the record is stale
    with caplog.at_level(logging.WARNING):
        assert load_training_files(model) is None
    assert "made for other weights" in caplog.text
    path.write_bytes(b"not safetensors")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_training_files(model)


def test_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="digests must be"):
        TrainingFiles(np.zeros((2, 4), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="roles must be"):
        TrainingFiles(np.zeros((2, DIGEST_BYTES), np.uint8), np.zeros(3, np.uint8))


def test_the_shipped_model_knows_its_training_files(shipped_model: Path,
                                                    chest_xray_dir: Path) -> None:
    """The shipped record matches the split rebuilt from the shared data (README figures)."""
    files = load_training_files(shipped_model)
    assert files is not None, "default.training-files.safetensors missing or stale"
    assert [files.count(role) for role in ROLES] == [3722, 651, 657, 186, 0]
    train = discover(chest_xray_dir).splits["train"]
    sample: Sample = train[0]
    assert find_overlap(files, [sample.path]) != [""]
