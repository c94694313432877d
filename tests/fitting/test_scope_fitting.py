"""Fitting the scope check: the augmented copies, and statistics stored beside the weights
that the Predictor then uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import trained_looking_model
from pneumoscan.dataset import training_split
from pneumoscan.fitted_state import SCOPE
from pneumoscan.fitting.scope_fitting import augmented_copies, fit_scope
from pneumoscan.modelfile import resolve_model
from pneumoscan.predictor import Predictor
from pneumoscan.scope import FEATURE_REASON, LAYOUT_REASON


def test_augmented_copies_are_reproducible_changed_images() -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32), dtype=np.uint8)
    copies = augmented_copies(images, seed=1)
    assert copies.shape == images.shape and copies.dtype == np.uint8
    np.testing.assert_array_equal(copies, augmented_copies(images, seed=1))
    assert not np.array_equal(copies, augmented_copies(images, seed=2))
    assert all(not np.array_equal(c, i) for c, i in zip(copies, images, strict=True))


def test_fitted_model_judges_by_its_training_images(tiny_model_dir: Path,
                                                    synthetic_dataset: Path,
                                                    tmp_path: Path) -> None:
    from skimage.data import camera

    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    train = training_split(resolve_model(model).card, synthetic_dataset).train
    statistics, path = fit_scope(model, train, cache_dir=tmp_path / "cache")
    assert path == SCOPE.path(model) and path.is_file()
    assert statistics.features.n_images == statistics.layout.n_images == 2 * len(train)
    predictor = Predictor.load(model, backend="torch")
    assert predictor.scope is not None
    result = predictor.predict(camera(), heatmap=False)  # in scope for an unfitted model
    assert not result.in_scope and result.scope_reason in (LAYOUT_REASON, FEATURE_REASON)
    assert result.scope_distance is not None and result.scope_distance > 1.0
