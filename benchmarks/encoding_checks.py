"""The same answer whatever the encoding: resolution, codec, JPEG quality, resize filter.

For a model (default: the shipped one), |P(pneumonia) of a variant - P of the film as it is|:

- **codec**: the NEMA radiograph as JPEG 2000 against the same radiograph as JPEG-LS
  near-lossless (``../shared/data/dicom``; target 0.02);
- **resolution**: each shared DICOM (1,024-1,955 px, 256 px for the small one) and adult
  films of ``adult_nih`` / ``adult_other`` (up to 512 px) against their 224 px copies made
  with four resize filters, as PNG and as JPEG (target 0.05);
- **JPEG quality**: pediatric validation films (224 px already) re-encoded at quality
  50-95.

The probabilities are the model's output whether or not the result applies (the adults
are out of its population): this measures the path, not a finding.

Usage:
    python benchmarks/encoding_checks.py [--data ../shared/data] [--model DIR] [--films 30]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from pneumoscan.dataset import training_split
from pneumoscan.imaging import load_image
from pneumoscan.predictor import Predictor
from pneumoscan.reports.encoding_checks import (
    largest_changes,
    quality_variants,
    resolution_variants,
)


def probabilities(predictor: Predictor, films: list[np.ndarray]) -> np.ndarray:
    """The model's P(pneumonia) of decoded films ``(H, W)`` uint8."""
    decoded = [predictor.decode(film) for film in films]
    return np.array([p.probability for p in predictor.predict_decoded(decoded, heatmap=False)])


def adult_films(folder: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` films listed in a folder's labels.csv (sorted by file name)."""
    with (folder / "labels.csv").open() as handle:
        files = sorted(row["file"] for row in csv.DictReader(handle))
    return [load_image(folder / name) for name in files[:n]]


def print_rows(title: str, changes: dict[str, np.ndarray]) -> None:
    for name, values in changes.items():
        print(f"{title:<34} {name:<28} {len(values):>4} {values.mean():>9.4f} "
              f"{values.max():>9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--films", type=int, default=30)
    args = parser.parse_args()

    predictor = Predictor.load(args.model)

    def probability(films: list[np.ndarray]) -> np.ndarray:
        return probabilities(predictor, films)

    print(f"model {predictor.version}; |P(variant) - P(as it is)|")
    print(f"{'set':<34} {'variant':<28} {'n':>4} {'mean':>9} {'max':>9}")
    dicom = args.data / "dicom"
    j2k = load_image(dicom / "cr_nema_pa_monochrome1_jpeg2000.dcm")
    jls = load_image(dicom / "cr_nema_pa_monochrome1_jpegls.dcm")
    print_rows("codec (NEMA film)", {"JPEG 2000 vs JPEG-LS": np.abs(np.diff(
        probability([j2k, jls])))})
    dicoms = [load_image(path) for path in sorted(dicom.glob("*.dcm"))]
    print_rows("resolution: shared DICOMs", largest_changes(probability, dicoms,
                                                             resolution_variants))
    for name in ("adult_nih", "adult_other"):
        films = adult_films(args.data / name, args.films)
        print_rows(f"resolution: {name} (<= 512 px)",
                   largest_changes(probability, films, resolution_variants))
    validation = training_split(predictor.card, args.data / "chest_xray").validation
    chosen = [validation[int(i)] for i in np.linspace(0, len(validation) - 1, args.films)]
    print_rows("JPEG quality: pediatric validation",
               largest_changes(probability, [load_image(s.path) for s in chosen],
                               quality_variants))


if __name__ == "__main__":
    main()
