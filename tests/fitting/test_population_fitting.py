"""Fitting the population check: adult films grouped by patient, the held-out split, the
threshold rule, and a classifier stored beside the weights that the Predictor then uses."""

from __future__ import annotations

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
    fit_classifier,
    fit_population,
    fitting_features,
    split_adults,
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


def _pooled_size(predictor: Predictor) -> int:
    """Length of the pooled feature vector the head (and the population check) reads."""
    side = predictor.card.preprocessing.image_size
    return int(predictor.pooled_features(np.zeros((1, side, side), np.uint8)).shape[1])
