"""Which image files a model has seen: content digests of its split, and overlap with them.

A model card's ``data_fingerprint`` names the data set a model was trained on; it cannot say
whether a folder being evaluated holds some of those images (copied, renamed, mixed with
others). Per-file digests can. ``pneumoscan train`` records the SHA-256 of every file on
each side of its split (:data:`ROLES`: trained on, patient-level validation, out-of-protocol
validation) beside the weights, in ``model.training-files.safetensors`` (or
``NAME.training-files.safetensors`` beside ``NAME.safetensors``, in the store of fitted
state, :mod:`pneumoscan.fitted_state`), tied to those weights by their SHA-256;
``pneumoscan evaluate`` looks the evaluated files up (:func:`find_overlap`).

Digests of the file bytes, cut to :data:`DIGEST_BYTES`: no names, no pixels, nothing that
identifies a patient. They find exact copies under any name; a re-encoded or resized copy
of a training image has other bytes and is not found.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.fitted_state import FittedKind, load_fitted, write_fitted
from pneumoscan.modelfile import ModelLike, resolve_model

if TYPE_CHECKING:  # dataset imports scikit-learn; only its type is needed here
    from pneumoscan.dataset import TrainingSplit

logger = logging.getLogger(__name__)

#: Sides of a training run's split, in the order of their codes in :attr:`TrainingFiles.roles`,
#: then a site's own films that ``pneumoscan calibrate`` fitted a site model on.
ROLES: tuple[str, ...] = ("training", "validation", "protocol", "edge", "calibration")
#: What each side's images were used for, in words (for warnings and reports).
ROLE_USES = {
    "training": "images this model was trained on: its figures on them are not a test of "
                "the model and are inflated",
    "validation": "the model's patient-level validation images, which calibrated it and "
                  "chose its threshold: validation figures, not test figures",
    "protocol": "the model's out-of-protocol validation images (whole blocks of patients "
                "held out of training): validation figures, not test figures",
    "edge": "the model's edge-of-time validation images (the earliest and latest patients "
            "of each series, held out of training): validation figures, not test figures",
    "calibration": "the site's own films this site calibration was fitted on (they chose "
                   "its threshold and probabilities): calibration figures, not test figures",
}
#: Bytes kept of each SHA-256 digest: 128 bits, no chance collisions among millions of files.
DIGEST_BYTES = 16
#: The record's file beside the weights, its format, and how to record the files of a
#: model trained before records were kept.
TRAINING_FILES = FittedKind(
    ".training-files.safetensors", "pneumoscan.training-files/1",
    "python -c 'from pneumoscan.training_files import record_model; "
    "record_model(\"{model}\", \"DATA\")'",
    "overlap with the model's training data cannot be checked", own_beside_card=True)


@dataclass(frozen=True)
class TrainingFiles:
    """The digests of the files of a model's split and the side each file was on."""

    digests: np.ndarray  # (N, DIGEST_BYTES) uint8
    roles: np.ndarray  # (N,) uint8: index into ROLES
    data_fingerprint: str = ""  # the card's fingerprint of the data they came from

    def __post_init__(self) -> None:
        if self.digests.ndim != 2 or self.digests.shape[1] != DIGEST_BYTES:
            raise ValueError(f"digests must be (N, {DIGEST_BYTES}), got {self.digests.shape}")
        if self.roles.shape != (len(self.digests),):
            raise ValueError(f"roles must be ({len(self.digests)},), got {self.roles.shape}")

    def count(self, role: str) -> int:
        return int(np.count_nonzero(self.roles == ROLES.index(role)))


def file_digest(path: Path) -> bytes:
    """The first :data:`DIGEST_BYTES` of the SHA-256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()[:DIGEST_BYTES]


def _digest_array(paths: Iterable[Path]) -> np.ndarray:
    """``(N, DIGEST_BYTES)`` uint8 digests of ``paths``."""
    rows = [np.frombuffer(file_digest(path), dtype=np.uint8) for path in paths]
    return np.stack(rows) if rows else np.zeros((0, DIGEST_BYTES), np.uint8)


def with_calibration_files(files: TrainingFiles | None, paths: Sequence[Path]) -> TrainingFiles:
    """``files`` (a parent model's record, or None) plus ``paths`` as calibration films."""
    added = _digest_array(paths)
    codes = np.full(len(added), ROLES.index("calibration"), np.uint8)
    if files is None:
        return TrainingFiles(added, codes)
    return TrainingFiles(np.concatenate([files.digests, added]),
                         np.concatenate([files.roles, codes]), files.data_fingerprint)


def record_split(split: TrainingSplit, data_fingerprint: str = "") -> TrainingFiles:
    """The digests of every file on each side of ``split``, in the order of :data:`ROLES`."""
    sides = (split.train, split.validation, split.protocol, split.edge)
    paths = [sample.path for side in sides for sample in side]
    roles = np.concatenate([np.full(len(side), code, np.uint8)
                            for code, side in enumerate(sides)])
    return TrainingFiles(_digest_array(paths), roles, data_fingerprint)


def find_overlap(files: TrainingFiles, paths: Sequence[Path]) -> list[str]:
    """For each of ``paths``, the side of the model's split holding the same bytes, or ""."""
    wanted = _digest_array(paths)
    # Later entries win: by falling code, so a file on two sides (a duplicate image in the
    # data) is named by the first of ROLES, "training".
    order = np.argsort(-files.roles.astype(np.int16), kind="stable")
    known = {files.digests[i].tobytes(): ROLES[files.roles[i]] for i in order}
    return [known.get(row.tobytes(), "") for row in wanted]


def count_overlap(roles: Sequence[str]) -> dict[str, int]:
    """How many of :func:`find_overlap`'s answers name each side (every side, 0 included)."""
    return {role: sum(found == role for found in roles) for role in ROLES}


def overlap_warnings(counts: dict[str, int], total: int) -> list[str]:
    """One sentence per side of the model's split that the evaluated images overlap."""
    return [f"{counts[role]} of the {total} evaluated images are {ROLE_USES[role]}"
            for role in ROLES if counts.get(role)]


def save_training_files(files: TrainingFiles, model: ModelLike) -> Path:
    """Write ``files`` beside the model's weights (atomically); return the file."""
    return write_fitted(model, TRAINING_FILES,
                        {"digests": files.digests.astype(np.uint8),
                         "roles": files.roles.astype(np.uint8)},
                        {"data_fingerprint": files.data_fingerprint})


def load_training_files(model: ModelLike) -> TrainingFiles | None:
    """The model's record, or None when it has none for these weights (made before records
    were kept, or its weights replaced since: a stale record, which would describe another
    training run, is ignored with a warning).

    Raises:
        ModelFileError: the file exists but is not a readable record.
    """
    return load_fitted(model, TRAINING_FILES, lambda tensors, metadata: TrainingFiles(
        tensors["digests"], tensors["roles"], metadata.get("data_fingerprint", "")),
        "not a readable record of training files")


def record_model(model: ModelLike, data: Path | str) -> Path:
    """Record the files of the split ``model`` was trained on, rebuilt from the config in its
    card out of ``data`` (refused when ``data`` is not the data it was trained on); for a
    model trained before ``pneumoscan train`` kept records. Returns the file written."""
    from pneumoscan.dataset import training_split

    files = resolve_model(model)
    card = files.card
    return save_training_files(record_split(training_split(card, data), card.data_fingerprint),
                               files)
