"""The model shipped inside the package: within its size budgets, loadable without pickle,
its parts made for one another (card, ONNX export, scope statistics), and ranking images it
never trained on (its own validation split) well."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sklearn.metrics import roc_auc_score

from pneumoscan.dataset import training_split
from pneumoscan.fitted_state import SCOPE, load_scope
from pneumoscan.modelfile import load_model, resolve_model
from pneumoscan.predictor import Predictor
from pneumoscan.scope import THUMBNAIL_SIDE


def test_shipped_files_are_within_their_size_budgets(shipped_model: Path) -> None:
    assert shipped_model.stat().st_size <= 25 * 1024 * 1024
    assert shipped_model.with_suffix(".json").stat().st_size < 20 * 1024  # a card, no arrays
    assert SCOPE.path(shipped_model).stat().st_size < 1024 * 1024


def test_shipped_weights_load_strictly_into_the_cards_architecture(shipped_model: Path,
                                                                   ) -> None:
    model, card = load_model(shipped_model)  # strict: every tensor, no pickle
    with safe_open(str(shipped_model), framework="numpy") as handle:
        assert len(handle.keys()) == len(model.state_dict())
    assert card.class_names == ["NORMAL", "PNEUMONIA"]
    assert 0.0 < card.threshold < 1.0
    assert card.temperature > 0
    assert card.validation["auc"] > 0.95


def test_shipped_onnx_export_is_of_these_weights(shipped_model: Path) -> None:
    """The backend refuses an export whose weights digest differs from the weights'; its
    pooled features have the dimension the scope statistics were fitted on."""
    pytest.importorskip("onnxruntime")
    from pneumoscan.onnx_backend import OnnxBackend

    side = resolve_model(shipped_model).card.preprocessing.image_size
    logits, _, pooled = OnnxBackend(shipped_model).run(np.zeros((1, 1, side, side), np.float32))
    scope = load_scope(shipped_model)
    assert scope is not None
    assert logits.shape == (1, 2) and pooled.shape == (1, len(scope.features.mean))


def test_shipped_scope_statistics_are_fitted_on_its_training_split(
        shipped_model: Path, chest_xray_dir: Path) -> None:
    scope = load_scope(shipped_model)  # None also when fitted for other weights
    assert scope is not None, "run: pneumoscan fit-scope " + str(shipped_model) + " --data DATA"
    model, card = load_model(shipped_model)
    side = card.preprocessing.image_size
    with torch.no_grad():  # what the checks read: the head's features and the context
        pooled = model.eval().forward_with_evidence(torch.zeros(1, 1, side, side))[2]
    assert scope.features.mean.shape == (pooled.shape[1],)
    assert scope.layout.mean.shape == (THUMBNAIL_SIDE**2,)
    # The training images and one augmented copy of each: the split the card describes.
    train = training_split(card, chest_xray_dir).train
    assert scope.features.n_images == scope.layout.n_images == 2 * len(train)


@pytest.mark.slow
def test_shipped_model_ranks_its_validation_images(shipped_predictor: Predictor,
                                                   chest_xray_dir: Path) -> None:
    """50 normal and 50 pneumonia images of the validation split (never trained on)."""
    validation = training_split(resolve_model(None).card, chest_xray_dir).validation
    chosen = [s for label in (0, 1) for s in [s for s in validation if s.label == label][:50]]
    labels = np.array([s.label for s in chosen])
    results = list(shipped_predictor.predict_files([s.path for s in chosen], batch_size=25))
    probabilities = np.array([r.prediction.probability for r in results if r.prediction])
    assert len(probabilities) == 100
    assert roc_auc_score(labels, probabilities) > 0.97
    assert probabilities[labels == 1].mean() - probabilities[labels == 0].mean() > 0.5
