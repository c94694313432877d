"""Finding labelled X-rays on disk, naming their patients, and splitting by patient.

Layouts accepted (class folder names are case-insensitive):

- ``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*`` (any of the splits present), or
- ``ROOT/{NORMAL,PNEUMONIA}/*``.

Patient ids come from the Kermany et al. file names: ``personN_bacteria_M`` and
``personN_virus_M`` (pneumonia, with its cause), ``IM-NNNN-MMMM`` and
``NORMAL2-IM-NNNN-MMMM`` (normal; ``IM-NNNN`` is the patient).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pneumoscan.errors import DataLayoutError, ModelFileError
from pneumoscan.imaging import IMAGE_SUFFIXES
from pneumoscan.modelcard import CAUSE_NAMES, CLASS_NAMES, ModelCard

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")

_PERSON = re.compile(r"^(person\d+)_(bacteria|virus)_\d+", re.IGNORECASE)
_NORMAL = re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One labelled image."""

    path: Path
    label: int  # index into CLASS_NAMES: 0 normal, 1 pneumonia
    patient_id: str
    cause: int | None = None  # index into CAUSE_NAMES when known, else None


@dataclass(frozen=True)
class Discovery:
    """What a data folder holds: samples per split and what was skipped."""

    splits: dict[str, list[Sample]]
    skipped: int


def parse_patient_id(file_name: str) -> str:
    """Return the patient id encoded in a Kermany-style file name.

    ``person1_bacteria_1.jpeg`` → ``person1``; ``IM-0115-0001.jpeg`` → ``im-0115``;
    ``NORMAL2-IM-0313-0001.jpeg`` → ``normal2-im-0313`` (ids are lower-cased, so a name's
    case does not split a patient). A name that follows neither pattern is its own
    patient (its stem), which is the safe choice for a split.
    """
    stem = Path(file_name).stem
    for pattern in (_PERSON, _NORMAL):
        match = pattern.match(stem)
        if match:
            return match.group(1).lower()
    return stem.lower()


def parse_cause(file_name: str) -> int | None:
    """Return the cause index (0 viral, 1 bacterial) from a file name, or None if absent."""
    match = _PERSON.match(Path(file_name).stem)
    if not match:
        return None
    return CAUSE_NAMES.index("bacterial" if match.group(2).lower() == "bacteria" else "viral")


def _class_folders(folder: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for child in folder.iterdir():
        if child.is_dir() and child.name.upper() in CLASS_NAMES:
            found[CLASS_NAMES.index(child.name.upper())] = child
    return found


def _scan_class_folder(folder: Path, label: int) -> tuple[list[Sample], int]:
    samples: list[Sample] = []
    skipped = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            skipped += 1
            continue
        cause = parse_cause(path.name) if label == 1 else None
        samples.append(Sample(path, label, parse_patient_id(path.name), cause))
    return samples, skipped


def discover(root: Path | str) -> Discovery:
    """Find every labelled image under ``root``.

    Returns the samples of each split present (a root holding the class folders directly
    gives one split, ``"all"``). Files with other suffixes are skipped and counted.

    Raises:
        DataLayoutError: ``root`` is missing, has no class folders, or a class is empty.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataLayoutError(f"{root}: data folder not found; pass --data with a folder "
                              "holding NORMAL/ and PNEUMONIA/ (or train/, val/, test/)")
    split_dirs = {c.name.lower(): c for c in root.iterdir()
                  if c.is_dir() and c.name.lower() in SPLIT_NAMES}
    folders = split_dirs if split_dirs else {"all": root}
    splits: dict[str, list[Sample]] = {}
    skipped = 0
    for split, folder in sorted(folders.items()):
        classes = _class_folders(folder)
        if not classes:
            if split_dirs:
                continue
            raise DataLayoutError(f"{folder}: no NORMAL/ or PNEUMONIA/ folder inside; expected "
                                  "ROOT/{train,val,test}/{NORMAL,PNEUMONIA} or "
                                  "ROOT/{NORMAL,PNEUMONIA}")
        samples: list[Sample] = []
        for label, class_dir in sorted(classes.items()):
            found, n_skipped = _scan_class_folder(class_dir, label)
            skipped += n_skipped
            if not found:
                raise DataLayoutError(f"{class_dir}: class folder holds no .jpeg/.jpg/.png/.dcm "
                                      "image; add images or remove the folder")
            samples.extend(found)
        splits[split] = samples
    if not splits:
        raise DataLayoutError(f"{root}: no split folder holds NORMAL/ or PNEUMONIA/")
    if skipped:
        logger.warning("skipped %d file(s) that are not .jpeg/.jpg/.png/.dcm under %s",
                       skipped, root)
    return Discovery(splits, skipped)


def evaluation_split(root: Path | str) -> tuple[str, list[Sample]]:
    """The split to evaluate under ``root`` and its samples: ``test``, ``all`` (the class
    folders directly inside ``root``) or the only split there is (``train``, say)."""
    found = discover(root).splits
    for name in ("test", "all"):
        if name in found:
            return name, found[name]
    if len(found) == 1:
        return next(iter(found.items()))
    raise DataLayoutError(f"{root}: holds {sorted(found)} but no test/ split; point --data "
                          f"at the one folder to evaluate (e.g. {root}/val)")


def split_by_patient(samples: list[Sample], val_fraction: float = 0.15,
                     seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split into (train, validation) so that no patient is on both sides.

    The split is stratified by label and grouped by patient (scikit-learn's
    ``StratifiedGroupKFold`` with ``round(1 / val_fraction)`` folds, one fold held out),
    and fully determined by ``seed``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_splits = max(2, round(1.0 / val_fraction))
    labels = np.array([s.label for s in samples])
    groups = np.array([f"{s.label}:{s.patient_id}" for s in samples])
    if len(set(groups)) < n_splits:
        raise DataLayoutError(f"only {len(set(groups))} patients; need at least {n_splits} "
                              f"for a {val_fraction:.0%} patient-level validation split")
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(folds.split(np.zeros(len(samples)), labels, groups))
    return [samples[i] for i in train_idx], [samples[i] for i in val_idx]


def patient_series(patient_id: str) -> tuple[str, int] | None:
    """The numbering series of a Kermany-style patient id and its number, else None.

    ``person12`` → ``("person", 12)``, ``im-0115`` → ``("im", 115)``, ``normal2-im-0383`` →
    ``("normal2-im", 383)``. Within a series the numbers run roughly in acquisition order.
    """
    match = re.fullmatch(r"(person|im|normal2-im)-?(\d+)", patient_id)
    return (match.group(1), int(match.group(2))) if match else None


def hold_out_protocol_blocks(samples: list[Sample], fraction: float, seed: int = 0,
                             blocks: int = 20) -> tuple[list[Sample], list[Sample]]:
    """Split into (rest, held out) by blocks of consecutive patient numbers.

    Patients are numbered roughly in acquisition order, so a block of consecutive numbers
    approximates a stretch of time with its own protocol, staff and machine settings:
    scoring on whole blocks is validation out of protocol, not only out of patient (the
    official test split's errors come from such a run of consecutive patients). Each
    numbering series (``person``, ``im``, ``normal2-im``) is cut into ``blocks`` runs of
    consecutive patients and ``round(fraction * blocks)`` of them, chosen by ``seed``, are
    held out. Ids outside the series stay in the rest.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"protocol hold-out fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for runs in _series_runs(samples, blocks):
        chosen = rng.choice(blocks, size=max(1, round(fraction * blocks)), replace=False)
        for index in chosen:
            held.update(runs[index])
    rest = [s for s in samples if s.patient_id not in held]
    return rest, [s for s in samples if s.patient_id in held]


def _series_runs(samples: list[Sample], blocks: int) -> list[list[list[str]]]:
    """Per numbering series (sorted by name), its patients in number order cut into
    ``blocks`` runs of consecutive patients. Ids outside the series are in none."""
    numbered: dict[str, list[tuple[int, str]]] = {}
    for patient in sorted({s.patient_id for s in samples}):
        series = patient_series(patient)
        if series is not None:
            numbered.setdefault(series[0], []).append((series[1], patient))
    return [[[str(p) for p in run]
             for run in np.array_split(np.array([p for _, p in sorted(numbered[name])]),
                                       blocks)]
            for name in sorted(numbered)]


def edge_patients(samples: list[Sample], edge_blocks: int, blocks: int = 20) -> set[str]:
    """The patients of the first and last ``edge_blocks`` of ``blocks`` runs of each
    numbering series: the earliest and latest stretches of time in the data.

    A model is always used on a period it was not trained on, and the period just after
    the training data is the one it meets first: validation at the edges of the numbering
    measures that, which blocks from the middle do not.
    """
    if not 0 < 2 * edge_blocks < blocks:
        raise ValueError(f"edge_blocks must be between 1 and {(blocks - 1) // 2}, "
                         f"got {edge_blocks}")
    return {patient for runs in _series_runs(samples, blocks)
            for run in (*runs[:edge_blocks], *runs[-edge_blocks:]) for patient in run}


@dataclass(frozen=True)
class TrainingSplit:
    """The three sides of ``train/`` that a training run uses, rebuilt from its config."""

    train: list[Sample]
    validation: list[Sample]  # patient-level, same protocol as training
    protocol: list[Sample]  # whole blocks of consecutive patients (empty when not held out)
    # the earliest and latest blocks of each series not already in the two above (empty
    # when not held out): validation on another period, at the edge of time
    edge: list[Sample] = field(default_factory=list)


def split_for_training(pool: list[Sample], val_fraction: float, seed: int,
                       protocol_fraction: float = 0.0, edge_blocks: int = 0) -> TrainingSplit:
    """The one definition of a training run's split (training, fit-scope, benchmarks, tests).

    With ``protocol_fraction`` > 0, blocks of consecutive patients are held out first
    (:func:`hold_out_protocol_blocks`); the patient-level validation split is then made
    from the rest (:func:`split_by_patient`). With ``edge_blocks`` > 0 the patients of the
    first and last ``edge_blocks`` of 20 blocks of each series (:func:`edge_patients`) are
    then taken out of training: the two sets above stay exactly those of a run without
    them, so models with and without an edge hold-out can be compared on them.
    """
    protocol: list[Sample] = []
    everyone = pool
    if protocol_fraction > 0:
        pool, protocol = hold_out_protocol_blocks(pool, protocol_fraction, seed)
    train, validation = split_by_patient(pool, val_fraction, seed)
    edge: list[Sample] = []
    if edge_blocks > 0:
        edges = edge_patients(everyone, edge_blocks)
        edge = [s for s in train if s.patient_id in edges]
        train = [s for s in train if s.patient_id not in edges]
    return TrainingSplit(train, validation, protocol, edge)


def fingerprint(samples: list[Sample]) -> str:
    """A short hash of the file names, sizes and labels: identifies a data set version."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.path)):
        digest.update(f"{s.path.name}|{s.path.stat().st_size}|{s.label}\n".encode())
    return digest.hexdigest()[:16]


def describe(samples: list[Sample]) -> str:
    """A one-line count of the samples per class and patients."""
    counts = Counter(s.label for s in samples)
    patients = len({(s.label, s.patient_id) for s in samples})
    parts = [f"{CLASS_NAMES[k]} {counts.get(k, 0)}" for k in range(len(CLASS_NAMES))]
    return f"{len(samples)} images ({', '.join(parts)}) from {patients} patients"


def training_split(card: ModelCard, data: Path | str) -> TrainingSplit:
    """The split ``card``'s model was trained on, rebuilt from the config stored in it.

    Raises:
        ModelFileError: the card holds no training config (seed and val_fraction).
        DataLayoutError: ``data`` has no training images, or not the ones the model was
            trained on (their fingerprint differs from the card's).
    """
    config = card.training.get("config", {})
    if "seed" not in config or "val_fraction" not in config:
        raise ModelFileError("the model card has no training.config seed and val_fraction: "
                             "cannot rebuild the split it was trained on")
    found = discover(data).splits
    pool = found.get("train") or found.get("all")
    if not pool:
        raise DataLayoutError(f"{data}: no train/ split (or class folders) to fit on")
    if card.data_fingerprint and fingerprint(pool) != card.data_fingerprint:
        raise DataLayoutError(f"{data}: not the data this model was trained on (fingerprint "
                              f"{fingerprint(pool)}, its card says {card.data_fingerprint}); "
                              "pass the --data folder it was trained on")
    return split_for_training(pool, float(config["val_fraction"]),
                              split_seed(int(config["seed"]), int(config.get("split_seed", -1))),
                              float(config.get("protocol_fraction", 0.0)),
                              int(config.get("edge_blocks", 0)))


def split_seed(seed: int, split: int) -> int:
    """The seed a training run's split is drawn with: ``split``, or ``seed`` when it is -1
    (a training config's ``split_seed`` and ``seed``)."""
    return seed if split == -1 else split
