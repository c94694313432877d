"""Fit a model's input-scope statistics on its own training split; write them to model.json.

Usage:
    python benchmarks/fit_scope.py --model src/pneumoscan/weights/default.safetensors \\
        --data ../shared/data/chest_xray

The training split is rebuilt exactly as training made it (``split_by_patient`` with the
seed and val_fraction in the model's ``training.config``), so the validation images stay
unseen and ``benchmarks/scope_rates.py`` can measure the false-flag rate on them. Only the
``scope`` entry of model.json changes; every other key is kept as it was.

The statistics are fitted on the training images plus one randomly transformed copy of
each, with a wider zoom than training used: real radiographs vary more than one centre's
(adult chests are collimated tighter than these children's, which show arms and neck),
and a scope check that flags every adult radiograph would be worse than none.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from pneumoscan.dataset import Sample, discover, split_by_patient
from pneumoscan.image_cache import load_resized
from pneumoscan.modelfile import ModelCard, resolve_model_paths
from pneumoscan.predictor import Predictor
from pneumoscan.scope import (
    FEATURE_MARGIN,
    TRAINING_EXCEED_FRACTION,
    fit_scope_statistics,
    thumbnail,
)

logger = logging.getLogger("fit_scope")


def training_split(card: ModelCard, data: Path) -> tuple[list[Sample], list[Sample]]:
    """The (train, validation) samples the model was trained and validated on."""
    config = card.training.get("config", {})
    if "seed" not in config or "val_fraction" not in config:
        raise ValueError("model.json has no training.config seed / val_fraction; cannot "
                         "rebuild its training split")
    found = discover(data).splits
    pool = found.get("train") or found.get("all")
    if not pool:
        raise ValueError(f"{data}: no train/ split")
    return split_by_patient(pool, float(config["val_fraction"]), int(config["seed"]))


def augmented_copies(resized: np.ndarray, seed: int = 0) -> np.ndarray:
    """One randomly transformed copy ``(N, S, S)`` uint8 of each image."""
    import torch

    from pneumoscan.augmentation import AugmentConfig, augment_batch

    generator = torch.Generator().manual_seed(seed)
    # Training's ranges, with a wider zoom and shift.
    config = replace(AugmentConfig(), scale=0.3, aspect=0.15, translate=0.08)
    copies = []
    for start in range(0, len(resized), 256):
        batch = torch.from_numpy(resized[start:start + 256]).float().div_(255).unsqueeze(1)
        batch = augment_batch(batch, config, generator)  # (B, 1, S, S) in [0, 1]
        copies.append(batch[:, 0].mul(255).round_().to(torch.uint8).numpy())
    return np.concatenate(copies) if copies else resized[:0]


def fitting_set(predictor: Predictor, samples: list[Sample], cache_dir: Path | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features ``(2N, C)`` and thumbnails ``(2N, T)`` of the readable training
    images and their augmented copies."""
    resized, bad = load_resized(samples, predictor.card.preprocessing.image_size,
                                cache_dir=cache_dir)
    if bad:
        logger.warning("%d unreadable training image(s) left out", len(bad))
    images = np.concatenate([resized, augmented_copies(resized)])
    logger.info("computing features of %d images (training + augmented copies)", len(images))
    features = predictor.pooled_features(images)
    thumbnails = np.stack([thumbnail(image) for image in images])
    return features, thumbnails


def write_scope(model: Path, statistics: dict[str, object]) -> Path:
    """Replace the ``scope`` entry of the model's model.json; return its path."""
    _, card_path = resolve_model_paths(model)
    data = json.loads(card_path.read_text())
    data["scope"] = statistics
    card_path.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    return card_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True,
                        help="model folder or .safetensors file whose model.json is updated")
    parser.add_argument("--data", type=Path, required=True, help="the data root it was "
                        "trained on (../shared/data/chest_xray)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="decoded-image cache (default: the training cache)")
    parser.add_argument("--exceed-fraction", type=float, default=TRAINING_EXCEED_FRACTION,
                        help="share of training images allowed beyond the cut-offs")
    parser.add_argument("--feature-margin", type=float, default=FEATURE_MARGIN,
                        help="feature cut-off over its training quantile")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    predictor = Predictor.load(args.model, backend="torch")
    train, _ = training_split(predictor.card, args.data)
    features, thumbnails = fitting_set(predictor, train, args.cache_dir)
    statistics = fit_scope_statistics(features, thumbnails,
                                      exceed_fraction=args.exceed_fraction,
                                      feature_margin=args.feature_margin)
    path = write_scope(args.model, statistics)
    layout = statistics["thumbnail"]
    print(f"fitted on {statistics['n_images']} images (training + augmented copies): "
          f"features {statistics['n_components']} components, cut-off "
          f"{statistics['max_distance']:.2f} ({statistics['margin']} x the training "
          f"quantile); layout {layout['n_components']} components, "
          f"cut-off {layout['max_distance']:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
