"""Data discovery, patient/cause parsing, the patient-level split, and a model's own
training split rebuilt from its card."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conftest import make_synthetic_dataset, trained_looking_model
from pneumoscan.dataset import (
    Sample,
    describe,
    discover,
    edge_patients,
    evaluation_split,
    fingerprint,
    hold_out_protocol_blocks,
    parse_cause,
    parse_patient_id,
    patient_series,
    split_by_patient,
    split_for_training,
    training_split,
)
from pneumoscan.errors import DataLayoutError, ModelFileError
from pneumoscan.modelfile import resolve_model


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "patient"), [
    ("person1_bacteria_1.jpeg", "person1"),
    ("person1_bacteria_2.jpeg", "person1"),
    ("person1000_virus_1681.jpeg", "person1000"),
    ("Person7_Virus_3.JPEG", "person7"),
    ("IM-0115-0001.jpeg", "im-0115"),
    ("IM-0115-0002.jpeg", "im-0115"),
    ("NORMAL2-IM-0313-0001.jpeg", "normal2-im-0313"),
    ("im-0115-0003.png", "im-0115"),
    ("scan_42.dcm", "scan_42"),  # no pattern: its own patient
])
def test_parse_patient_id(name: str, patient: str) -> None:
    assert parse_patient_id(name) == patient


def test_normal2_series_is_not_the_same_patient_as_plain_im() -> None:
    assert parse_patient_id("NORMAL2-IM-0313-0001.jpeg") != parse_patient_id("IM-0313-0001.jpeg")


@pytest.mark.parametrize(("name", "cause"), [
    ("person1_bacteria_1.jpeg", 1),
    ("person10_virus_35.jpeg", 0),
    ("PERSON3_VIRUS_1.jpeg", 0),
    ("IM-0115-0001.jpeg", None),
    ("NORMAL2-IM-0313-0001.jpeg", None),
    ("person1_fungus_1.jpeg", None),
])
def test_parse_cause(name: str, cause: int | None) -> None:
    assert parse_cause(name) == cause


# --- layouts -----------------------------------------------------------------------------


def test_common_layout_with_three_splits(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path, n_patients=3, images_per_patient=1,
                                  splits=("train", "val", "test"))
    found = discover(root)
    assert sorted(found.splits) == ["test", "train", "val"]
    assert found.skipped == 0
    for samples in found.splits.values():
        assert Counter(s.label for s in samples) == {0: 3, 1: 3}
    train = found.splits["train"]
    pneumonia = [s for s in train if s.label == 1]
    assert {s.patient_id for s in pneumonia} == {"person1", "person2", "person3"}
    # make_synthetic_dataset: patient 0 (person1) is viral, the others bacterial
    assert {s.patient_id: s.cause for s in pneumonia} == {"person1": 0, "person2": 1,
                                                         "person3": 1}
    assert all(s.cause is None for s in train if s.label == 0)
    assert evaluation_split(root) == ("test", found.splits["test"])


def test_flat_layout_gives_one_split_called_all(tmp_path: Path) -> None:
    _touch(tmp_path / "NORMAL" / "IM-0001-0001.jpeg")
    _touch(tmp_path / "PNEUMONIA" / "person1_virus_1.png")
    found = discover(tmp_path)
    assert list(found.splits) == ["all"]
    assert [(s.path.name, s.label) for s in found.splits["all"]] == [
        ("IM-0001-0001.jpeg", 0), ("person1_virus_1.png", 1)]
    assert evaluation_split(tmp_path) == ("all", found.splits["all"])


def test_class_and_split_names_are_case_insensitive(tmp_path: Path) -> None:
    _touch(tmp_path / "Train" / "normal" / "IM-0001-0001.jpeg")
    _touch(tmp_path / "Train" / "Pneumonia" / "person1_virus_1.jpeg")
    _touch(tmp_path / "Train" / "Pneumonia" / "person2_bacteria_1.JPG")
    found = discover(tmp_path)
    assert list(found.splits) == ["train"]
    assert Counter(s.label for s in found.splits["train"]) == {0: 1, 1: 2}


def test_non_images_are_skipped_and_counted(tmp_path: Path) -> None:
    _touch(tmp_path / "NORMAL" / "IM-0001-0001.jpeg")
    _touch(tmp_path / "NORMAL" / "notes.txt")
    _touch(tmp_path / "NORMAL" / ".DS_Store")
    _touch(tmp_path / "PNEUMONIA" / "person1_virus_1.jpeg")
    _touch(tmp_path / "PNEUMONIA" / "Thumbs.db")
    _touch(tmp_path / "PNEUMONIA" / "scan.gif")
    _touch(tmp_path / "PNEUMONIA" / "more" / "person2_virus_1.dcm")  # nested: found
    found = discover(tmp_path)
    assert found.skipped == 4
    assert sorted(s.path.name for s in found.splits["all"]) == [
        "IM-0001-0001.jpeg", "person1_virus_1.jpeg", "person2_virus_1.dcm"]


def test_missing_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(DataLayoutError, match="no_such_folder"):
        discover(missing)
    with pytest.raises(FileNotFoundError):  # DataLayoutError is also a FileNotFoundError
        discover(missing)


def test_folder_without_class_folders(tmp_path: Path) -> None:
    _touch(tmp_path / "images" / "IM-0001-0001.jpeg")
    with pytest.raises(DataLayoutError, match=str(tmp_path)):
        discover(tmp_path)
    (tmp_path / "train" / "other").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match="no split folder"):
        discover(tmp_path)


def test_empty_class_folder_names_its_path(tmp_path: Path) -> None:
    _touch(tmp_path / "train" / "NORMAL" / "IM-0001-0001.jpeg")
    _touch(tmp_path / "train" / "PNEUMONIA" / "readme.txt")
    with pytest.raises(DataLayoutError) as error:
        discover(tmp_path)
    assert str(tmp_path / "train" / "PNEUMONIA") in str(error.value)


def test_evaluation_needs_a_test_split_when_several(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path, n_patients=1, images_per_patient=1,
                                  splits=("train", "val"))
    with pytest.raises(DataLayoutError) as error:
        evaluation_split(root)
    assert f"{root}/val" in str(error.value)


# --- split and fingerprint ---------------------------------------------------------------


def _toy_samples(n_patients: int, images: int) -> list[Sample]:
    samples = []
    for p in range(n_patients):
        label = int(p % 4 != 0)  # 25 % normal patients
        for m in range(images):
            samples.append(Sample(Path(f"p{p}_{m}.jpeg"), label, f"p{p}"))
    return samples


def test_split_keeps_patients_whole_and_is_deterministic() -> None:
    samples = _toy_samples(40, 3)
    train, val = split_by_patient(samples, 0.25, seed=3)
    assert len(train) + len(val) == len(samples)
    assert not {s.patient_id for s in train} & {s.patient_id for s in val}
    assert len({s.patient_id for s in val}) == 10  # 4 folds of 10 patients
    # stratified: 30 pneumonia + 10 normal patients over 4 folds -> 7 or 8 and 2 or 3 each
    assert Counter(s.label for s in val) in ({1: 21, 0: 9}, {1: 24, 0: 6})
    assert split_by_patient(samples, 0.25, seed=3) == (train, val)
    assert split_by_patient(samples, 0.25, seed=4) != (train, val)


def test_split_rejects_bad_fractions_and_too_few_patients() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_patient(_toy_samples(10, 1), 0.0)
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_patient(_toy_samples(10, 1), 1.0)
    with pytest.raises(DataLayoutError, match="only 5 patients"):
        split_by_patient(_toy_samples(5, 4), 0.15)


@pytest.mark.slow
def test_split_of_the_real_training_folder_is_leak_free(chest_xray_dir: Path) -> None:
    pool = discover(chest_xray_dir).splits["train"]
    assert Counter(s.label for s in pool) == {1: 3875, 0: 1341}
    train, val = split_by_patient(pool, 0.15, seed=0)
    assert len(train) + len(val) == len(pool)
    assert not {(s.label, s.patient_id) for s in train} & {(s.label, s.patient_id) for s in val}
    assert not {s.patient_id for s in train} & {s.patient_id for s in val}
    assert 0.12 < len(val) / len(pool) < 0.18
    pool_ratio = 3875 / len(pool)
    val_ratio = sum(s.label for s in val) / len(val)
    assert abs(val_ratio - pool_ratio) < 0.02  # stratified
    again_train, again_val = split_by_patient(pool, 0.15, seed=0)
    assert [s.path for s in again_val] == [s.path for s in val]
    assert [s.path for s in again_train] == [s.path for s in train]


def test_fingerprint_tracks_names_sizes_and_labels(tmp_path: Path) -> None:
    a = _touch(tmp_path / "a.jpeg", b"12345")
    b = _touch(tmp_path / "b.jpeg", b"123")
    samples = [Sample(a, 0, "a"), Sample(b, 1, "b")]
    first = fingerprint(samples)
    assert len(first) == 16 and first == fingerprint(samples[::-1])  # order-free
    assert fingerprint([Sample(a, 1, "a"), samples[1]]) != first  # label changed
    b.write_bytes(b"1234")
    assert fingerprint(samples) != first  # size changed


def test_describe_counts_images_and_patients() -> None:
    assert describe(_toy_samples(4, 2)) == "8 images (NORMAL 2, PNEUMONIA 6) from 4 patients"


def _numbered_samples() -> list[Sample]:
    samples = []
    for n in range(1, 201):
        samples.append(Sample(Path(f"person{n}_bacteria_1.jpeg"), 1, f"person{n}", 1))
    for n in range(100, 180):
        samples.append(Sample(Path(f"IM-{n:04d}-0001.jpeg"), 0, f"im-{n:04d}"))
        samples.append(Sample(Path(f"IM-{n:04d}-0002.jpeg"), 0, f"im-{n:04d}"))
    return samples


def test_patient_series() -> None:
    assert patient_series("person12") == ("person", 12)
    assert patient_series("im-0115") == ("im", 115)
    assert patient_series("normal2-im-0383") == ("normal2-im", 383)
    assert patient_series("scan_7") is None


def test_protocol_blocks_are_runs_of_consecutive_patients_of_each_series() -> None:
    samples = _numbered_samples()
    rest, held = hold_out_protocol_blocks(samples, 0.10, seed=0, blocks=10)
    assert len(rest) + len(held) == len(samples)
    assert not {s.patient_id for s in rest} & {s.patient_id for s in held}
    for series, total in (("person", 200), ("im", 80)):
        numbers = sorted({patient_series(s.patient_id)[1] for s in held  # type: ignore[index]
                          if s.patient_id.startswith(series)})
        assert len(numbers) == total // 10  # one block of ten in each series
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # consecutive
    assert hold_out_protocol_blocks(samples, 0.10, seed=0, blocks=10) == (rest, held)
    assert hold_out_protocol_blocks(samples, 0.10, seed=1, blocks=10)[1] != held
    with pytest.raises(ValueError, match="between 0 and 1"):
        hold_out_protocol_blocks(samples, 0.0)


def test_split_for_training_has_three_disjoint_sides() -> None:
    samples = _numbered_samples()
    split = split_for_training(samples, 0.2, seed=0, protocol_fraction=0.1)
    sides = [{s.patient_id for s in side} for side in (split.train, split.validation,
                                                        split.protocol)]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2]
                               or sides[1] & sides[2])
    assert sum(len(side) for side in (split.train, split.validation, split.protocol)) == \
        len(samples)
    # without a protocol hold-out it is the plain patient-level split of older models
    plain = split_for_training(samples, 0.2, seed=0)
    assert plain.protocol == []
    assert (plain.train, plain.validation) == split_by_patient(samples, 0.2, seed=0)


def test_edge_patients_are_the_earliest_and_latest_of_each_series() -> None:
    samples = _numbered_samples()
    edges = edge_patients(samples, 1)  # 20 blocks: persons 1-10 and 191-200, im 100-103...
    persons = sorted(patient_series(p)[1] for p in edges  # type: ignore[index]
                     if p.startswith("person"))
    assert persons == [*range(1, 11), *range(191, 201)]
    ims = sorted(patient_series(p)[1] for p in edges  # type: ignore[index]
                 if p.startswith("im"))
    assert ims == [100, 101, 102, 103, 176, 177, 178, 179]
    with pytest.raises(ValueError, match="edge_blocks"):
        edge_patients(samples, 10)


def test_an_edge_hold_out_leaves_the_other_held_out_sets_as_they_were() -> None:
    samples = _numbered_samples()
    before = split_for_training(samples, 0.2, seed=0, protocol_fraction=0.1)
    after = split_for_training(samples, 0.2, seed=0, protocol_fraction=0.1, edge_blocks=1)
    assert (after.validation, after.protocol) == (before.validation, before.protocol)
    assert after.edge and set(after.train) | set(after.edge) == set(before.train)
    assert not set(after.train) & set(after.edge)
    assert {s.patient_id for s in after.edge} <= edge_patients(samples, 1)
    assert not {s.patient_id for s in after.train} & edge_patients(samples, 1)
def test_training_split_is_the_one_the_card_describes(tiny_model_dir: Path,
                                                      synthetic_dataset: Path,
                                                      tmp_path: Path) -> None:
    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    pool = discover(synthetic_dataset).splits["train"]
    split = training_split(resolve_model(model).card, synthetic_dataset)
    assert split == split_for_training(pool, 0.25, 3, 0.0)
    assert split.train and split.validation and not split.protocol
    assert not {s.patient_id for s in split.train} & {s.patient_id for s in split.validation}


def test_a_split_seed_keeps_the_split_while_the_seed_changes(tiny_model_dir: Path,
                                                             synthetic_dataset: Path,
                                                             tmp_path: Path) -> None:
    """A run with seed 5 and split_seed 3 is validated on the patients of seed 3's run."""
    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m",
                                  seed=5, split_seed=3)
    pool = discover(synthetic_dataset).splits["train"]
    split = training_split(resolve_model(model).card, synthetic_dataset)
    assert split == split_for_training(pool, 0.25, 3, 0.0)
    assert split != split_for_training(pool, 0.25, 5, 0.0)


def test_training_split_refuses_other_data_and_cards_without_a_config(
        tiny_model_dir: Path, synthetic_dataset: Path, tmp_path: Path) -> None:
    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    other = make_synthetic_dataset(tmp_path / "other", n_patients=10)
    with pytest.raises(DataLayoutError, match="not the data this model was trained on"):
        training_split(resolve_model(model).card, other)
    only_test = make_synthetic_dataset(tmp_path / "only_test", n_patients=3, splits=("test",))
    with pytest.raises(DataLayoutError, match="no train/"):
        training_split(resolve_model(model).card, only_test)
    with pytest.raises(ModelFileError, match="seed and val_fraction"):
        training_split(resolve_model(tiny_model_dir).card, synthetic_dataset)
