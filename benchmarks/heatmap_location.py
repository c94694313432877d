"""Where the heat map's evidence sits: inside the lungs, or on the film's edges and markers.

For each model, on its own patient-level validation images: the share of the positive
class-activation mass (the pneumonia logit's evidence, upsampled to the input) that lies in
the central region where the lungs are (x 15-85 %, y 10-85 % of the image) and in the four
corner squares (20 % of each side) where burned-in markers and text sit, on the clean
images and on the same images with a large L/R marker burned in at a random corner.

Usage:
    python benchmarks/heatmap_location.py --data ../shared/data/chest_xray [MODEL ...]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pneumoscan.fitting.shifts import apply_shift, shift_by_name
from pneumoscan.heatmap import raw_activation_map
from pneumoscan.inference import run_batches
from pneumoscan.modelcard import ModelCard
from pneumoscan.modelfile import default_model_path, load_model
from pneumoscan.models import PneumoniaNet
from pneumoscan.preprocessing import resize_all
from shift_suite import validation_images


def evidence_maps(model: PneumoniaNet, card: ModelCard, images: np.ndarray) -> np.ndarray:
    """Positive evidence ``(N, S, S)`` at the model's input size, bilinear from the CAM."""
    size = card.preprocessing.image_size
    weight = model.head.weight[0].detach().numpy()

    def evidence(batch: np.ndarray) -> tuple[np.ndarray]:
        with torch.inference_mode():
            _, features, _ = model.forward_with_features(torch.from_numpy(batch))
        return (np.maximum(raw_activation_map(features.numpy(), weight), 0),)

    resized = resize_all(images, size)
    (raw,) = run_batches(evidence, resized, card.preprocessing)
    return np.stack([np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize(
        (size, size), Image.Resampling.BILINEAR)) for m in raw])


def shares(maps: np.ndarray) -> tuple[float, float]:
    """Mean share of each map's mass in the central region and in the corner squares."""
    n, height, width = maps.shape
    central = np.zeros((height, width), bool)
    central[int(0.10 * height):int(0.85 * height), int(0.15 * width):int(0.85 * width)] = True
    corner = np.zeros((height, width), bool)
    c_h, c_w = int(0.2 * height), int(0.2 * width)
    for rows in (slice(0, c_h), slice(height - c_h, height)):
        for cols in (slice(0, c_w), slice(width - c_w, width)):
            corner[rows, cols] = True
    total = maps.reshape(n, -1).sum(axis=1)
    keep = total > 0
    return (float((maps[:, central].sum(axis=1)[keep] / total[keep]).mean()),
            float((maps[:, corner].sum(axis=1)[keep] / total[keep]).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"))
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    print("| model | images | central region share (clean) | corner share (clean) | "
          "corner share (large side marker) |")
    print("|---|---|---|---|---|")
    for path in args.models or [default_model_path()]:
        model, card = load_model(path)
        images, labels = validation_images(args.data, card, "validation")
        marked = apply_shift(shift_by_name("large side marker"), images)
        for name, wanted in (("normal", 0), ("pneumonia", 1)):
            subset = labels == wanted
            clean = shares(evidence_maps(model, card, images[subset]))
            _, corner_marked = shares(evidence_maps(model, card, marked[subset]))
            print(f"| {card.version or path} | {name} ({int(subset.sum())}) | {clean[0]:.3f} "
                  f"| {clean[1]:.3f} | {corner_marked:.3f} |")


if __name__ == "__main__":
    main()
