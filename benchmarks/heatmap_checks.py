"""Does the heat map come from the image? Flip equivariance, peak spread, deletion, normals.

For a model (default: the shipped one), on films of its own patient-level validation set
(never trained on): the checks of :mod:`pneumoscan.reports.heatmap_checks`, through the
Predictor's one heat map (the model's evidence map, from the forward pass), and what a
prediction with its map costs.

Usage:
    python benchmarks/heatmap_checks.py --data ../shared/data/chest_xray [--model DIR]
        [--pneumonia 40] [--normal 40]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pneumoscan.dataset import Sample, training_split
from pneumoscan.image_cache import load_resized
from pneumoscan.predictor import Predictor
from pneumoscan.reports.heatmap_checks import FilmChecks, check_film, model_input, summarise


def spread_over(samples: list[Sample], n: int) -> list[Sample]:
    """``n`` samples taken evenly over ``samples`` (all of them if fewer)."""
    if len(samples) <= n:
        return samples
    return [samples[int(i)] for i in np.linspace(0, len(samples) - 1, n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--pneumonia", type=int, default=40)
    parser.add_argument("--normal", type=int, default=40)
    args = parser.parse_args()

    predictor = Predictor.load(args.model)
    config = predictor.card.preprocessing
    validation = training_split(predictor.card, args.data).validation
    rng = np.random.default_rng(0)
    rows: dict[str, list[FilmChecks]] = {}
    seconds = []
    for name, label, n in (("pneumonia", 1, args.pneumonia), ("normal", 0, args.normal)):
        samples = spread_over([s for s in validation if s.label == label], n)
        pixels, _ = load_resized(samples, config.image_size, config.source_size)
        rows[name] = [check_film(predictor, image, rng) for image in pixels]
        for image in pixels[:5]:
            started = time.perf_counter()
            grid = predictor.evidence(model_input(predictor, image)).shape
            seconds.append(time.perf_counter() - started)

    print(f"model {predictor.version}; heat map: the evidence map, {grid[0]} x {grid[1]}, "
          f"{np.median(seconds) * 1000:.1f} ms per forward pass with its map (median of "
          f"{len(seconds)}, {predictor.backend.__class__.__name__})")
    print(f"{'films':<10} {'n':>4} {'flip r':>7} {'peak spread':>12} {'max heat':>9} "
          f"{'mean heat':>10} {'cal. logit fall: hot 10%':>25} {'random 10%':>11} "
          f"{'P fall: hot':>12} {'random':>7}")
    for name, films in rows.items():
        s = summarise(films)
        print(f"{name:<10} {s.n:>4} {s.flip_r:>7.3f} {s.peak_spread:>12.3f} "
              f"{s.max_heat:>9.3f} {s.mean_heat:>10.4f} {s.drop_hot:>25.3f} "
              f"{s.drop_random:>11.3f} {s.p_drop_hot:>12.4f} {s.p_drop_random:>7.4f}")


if __name__ == "__main__":
    main()
