"""Fitting the population check: adult films grouped by patient and by source, the
held-out split of each source, leaving one source out, the threshold rule, and a classifier
stored beside the weights that the Predictor then uses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_adult_folder, trained_looking_model
from pneumoscan.dataset import training_split
from pneumoscan.fitted_state import (
    POPULATION,
    load_population,
    population_notes,
    save_population,
)
from pneumoscan.fitting.population_fitting import (
    ADULT_COPIES,
    find_adult_images,
    find_adult_sources,
    fit_classifier,
    fit_population,
    fit_population_on_folders,
    fitting_features,
    leave_one_source_out,
    split_adults,
    split_sources,
)
from pneumoscan.modelfile import resolve_model
from pneumoscan.population import ADULT, assess_population
from pneumoscan.predictor import Predictor
from pneumoscan.preprocessing import normalize, resize_all
from pneumoscan.scope import THUMBNAIL_SIDE


def test_adult_images_are_grouped_by_the_patient_in_labels_csv(tmp_path: Path) -> None:
    adults = find_adult_images(make_adult_folder(tmp_path / "a"))
    assert len(adults) == 18 and len({s.patient_id for s in adults}) == 9
    assert {s.label for s in adults if s.path.parent.name == "NORMAL"} == {0}
    without = find_adult_images(make_adult_folder(tmp_path / "b", with_labels=False))
    assert {s.patient_id for s in without} == {f"{p:08d}" for p in range(9)}  # name prefix
    with pytest.raises(FileNotFoundError, match="no adult images"):
        find_adult_images(tmp_path / "empty")


def test_the_adult_split_keeps_patients_whole_and_is_reproducible(tmp_path: Path) -> None:
    adults = find_adult_images(make_adult_folder(tmp_path / "a", n_patients=12))
    split = split_adults(adults)
    assert split.fit and split.held_out
    assert not {s.patient_id for s in split.fit} & {s.patient_id for s in split.held_out}
    assert len(split.fit) + len(split.held_out) == len(adults)
    assert split == split_adults(adults)


def test_threshold_is_half_or_the_pediatric_quantile_when_higher() -> None:
    rng = np.random.default_rng(0)
    pediatric, adult = rng.normal(-2, 1, (400, 4)), rng.normal(2, 1, (100, 4))
    separable = fit_classifier(pediatric, adult)
    assert separable.threshold == 0.5
    assert np.mean(separable.probability(pediatric) > 0.5) < 0.01
    assert np.mean(separable.probability(adult) > 0.5) > 0.95
    overlapping = fit_classifier(rng.normal(0, 1, (400, 4)), rng.normal(0.3, 1, (100, 4)),
                                 exceed_fraction=0.01)
    assert overlapping.threshold > 0.5  # balanced weights put many children above 0.5
    assert (overlapping.n_pediatric, overlapping.n_adult) == (400, 100)


def test_fitted_classifier_is_stored_and_used_by_the_predictor(
        tiny_model_dir: Path, synthetic_dataset: Path, tmp_path: Path) -> None:
    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    assert load_population(model) is None
    assert Predictor.load(model, backend="torch").population is None
    adults = split_adults(find_adult_images(make_adult_folder(tmp_path / "adults")))
    train = training_split(resolve_model(model).card, synthetic_dataset).train
    classifier, path = fit_population(model, train, adults.fit,
                                      cache_dir=tmp_path / "cache", notes={"seed": "0"})
    assert path == POPULATION.path(model) and path.is_file()
    assert classifier.n_pediatric == 2 * len(train)
    assert classifier.n_adult == (1 + ADULT_COPIES) * len(adults.fit)
    channels = _pooled_size(Predictor.load(model, backend="torch"))
    assert len(classifier.mean) == channels + THUMBNAIL_SIDE**2  # features + layout
    assert population_notes(model) == {"seed": "0"}
    stored = load_population(model)
    assert stored is not None
    np.testing.assert_allclose(stored.weight, classifier.weight, rtol=1e-6)
    predictor = Predictor.load(model, backend="torch")
    assert predictor.population is not None
    held_out = fitting_features(predictor, adults.held_out, copies=0)
    assert np.all(predictor.population.probability(held_out) > classifier.threshold)
    # through the Predictor: the image decides for an image in scope (this tiny model has
    # no scope fit, so its results are out of scope; the check is called as it would be)
    decoded = predictor.decode(adults.held_out[0].path)
    resized = resize_all([decoded.pixels], 64)[0]
    pooled = predictor.backend.run(normalize(resized[None], predictor.card.preprocessing))[2]
    verdict = assess_population(None, pooled[0], resized, True, predictor.population)
    assert verdict.population == ADULT and verdict.probability is not None


def test_a_classifier_fitted_for_other_weights_is_ignored(
        tiny_model_dir: Path, synthetic_dataset: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    from dataclasses import replace

    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    dimension = _pooled_size(Predictor.load(model, backend="torch")) + THUMBNAIL_SIDE**2
    fitted = fit_classifier(np.random.default_rng(0).normal(-1, 1, (50, dimension)),
                            np.random.default_rng(1).normal(1, 1, (50, dimension)))
    save_population(replace(fitted, threshold=0.6), model)
    assert load_population(model) is not None
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")  # other weights, same file name
    assert load_population(model) is None
    assert "fit-population" in caplog.text


def make_sourced_folder(root: Path, sources: dict[str, int]) -> Path:
    """:func:`make_adult_folder` whose patients come, in turn, from ``sources`` (name:
    patients), named in a ``source`` column of its labels.csv (as ``adult_other``)."""
    make_adult_folder(root, n_patients=sum(sources.values()))
    names = [name for name, count in sources.items() for _ in range(count)]
    with (root / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["source"] = names[int(row["patient_id"].removeprefix("P"))]
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "patient_id", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_sources_come_from_the_source_column_else_the_folder(tmp_path: Path) -> None:
    plain = make_adult_folder(tmp_path / "hospital_a", n_patients=6)
    sourced = make_sourced_folder(tmp_path / "other", {"clinic": 6, "app": 9})
    sources = find_adult_sources([plain, sourced])
    assert list(sources) == ["hospital_a", "clinic", "app"]
    assert [len(films) for films in sources.values()] == [12, 12, 18]
    assert all(s.path.is_relative_to(sourced) for s in sources["app"])
    assert find_adult_sources([sourced])["clinic"] == sources["clinic"]
    with pytest.raises(ValueError, match="clinic"):  # one folder given twice
        find_adult_sources([sourced, sourced])
    with pytest.raises(ValueError, match="no adult folders"):
        find_adult_sources([])


def test_films_of_one_case_are_one_patient(tmp_path: Path) -> None:
    root = make_adult_folder(tmp_path / "a", n_patients=3)
    with (root / "labels.csv").open(newline="") as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    ids = ["COVID-00003a", "COVID-00003b", "COVID-00004", "ANON12", "ANON12", "COVID-X"]
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "patient_id"])
        writer.writeheader()
        writer.writerows({"file": f, "patient_id": p} for f, p in zip(files, ids, strict=True))
    patients = {s.path.relative_to(root).as_posix(): s.patient_id
                for s in find_adult_images(root)}
    assert [patients[f] for f in files] == ["COVID-00003", "COVID-00003", "COVID-00004",
                                            "ANON12", "ANON12", "COVID-X"]


def test_each_source_is_split_by_patient_on_its_own(tmp_path: Path) -> None:
    sources = find_adult_sources([make_adult_folder(tmp_path / "nih", n_patients=12),
                                  make_sourced_folder(tmp_path / "o", {"x": 6, "y": 9})])
    splits = split_sources(sources)
    assert list(splits) == ["nih", "x", "y"]
    for name, split in splits.items():
        assert split.fit and split.held_out
        assert sorted(map(str, [s.path for s in split.fit + split.held_out])) == \
            sorted(str(s.path) for s in sources[name])
        assert not {s.patient_id for s in split.fit} & {s.patient_id for s in split.held_out}
        assert split == split_adults(sources[name])  # the one split, source by source
    assert splits == split_sources(sources)
    assert split_sources(sources, seed=1) != splits


def test_leave_one_source_out_holds_each_source_out_whole(tmp_path: Path) -> None:
    sources = find_adult_sources([make_adult_folder(tmp_path / "nih", n_patients=6),
                                  make_sourced_folder(tmp_path / "o", {"x": 3, "y": 4})])
    folds = leave_one_source_out(sources)
    assert [fold.source for fold in folds] == ["nih", "x", "y"]
    for fold in folds:
        assert fold.held_out == sources[fold.source]
        assert sorted(map(str, [s.path for s in fold.fit])) == sorted(
            str(s.path) for name, films in sources.items() if name != fold.source
            for s in films)
        assert not {s.path for s in fold.fit} & {s.path for s in fold.held_out}
    with pytest.raises(ValueError, match="at least two sources"):
        leave_one_source_out({"nih": sources["nih"]})


def test_a_fit_on_several_sources_notes_them_and_holds_out_each(
        tiny_model_dir: Path, synthetic_dataset: Path, tmp_path: Path) -> None:
    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    folders = [make_adult_folder(tmp_path / "nih", n_patients=6),
               make_sourced_folder(tmp_path / "other", {"x": 6, "y": 6})]
    train = training_split(resolve_model(model).card, synthetic_dataset).train
    classifier, path, splits = fit_population_on_folders(model, train, folders,
                                                         cache_dir=tmp_path / "cache")
    assert path == POPULATION.path(model) and load_population(model) is not None
    assert list(splits) == ["nih", "x", "y"]
    fitted = sum(len(split.fit) for split in splits.values())
    assert classifier.n_adult == (1 + ADULT_COPIES) * fitted
    notes = population_notes(model)
    assert json.loads(notes["adults"]) == ["nih", "other"]
    assert json.loads(notes["sources"]) == ["nih", "x", "y"]
    assert {name: int(notes[f"held_out.{name}"]) for name in splits} == \
        {name: len(split.held_out) for name, split in splits.items()}
    assert int(notes["adults_held_out"]) == sum(len(s.held_out) for s in splits.values())
    # every source's held-out patients are adults to the stored classifier
    predictor = Predictor.load(model, backend="torch")
    assert predictor.population is not None
    for split in splits.values():
        held_out = fitting_features(predictor, split.held_out, copies=0)
        assert np.all(predictor.population.probability(held_out) > classifier.threshold)


def _pooled_size(predictor: Predictor) -> int:
    """Length of the pooled feature vector the head (and the population check) reads."""
    side = predictor.card.preprocessing.image_size
    return int(predictor.pooled_features(np.zeros((1, side, side), np.uint8)).shape[1])
