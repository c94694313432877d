"""Input-scope check: false-flag rate on validation radiographs, detection rate elsewhere.

Usage:
    python benchmarks/scope_rates.py --data ../shared/data/chest_xray [--model PATH]

Prints, for a model (default: the shipped one):

- the false-flag rate: the share of the model's own patient-level validation images
  (its split rebuilt from the config in its model.json) that the check calls out of
  scope, with a 95 % Wilson interval, through the full Predictor on the files;
- whether each shared adult DICOM radiograph is in scope (all should be);
- the detection rate on a set of non-X-ray images assembled from what installed packages
  ship (scikit-image's and matplotlib's sample images, pydicom's CT / MR / NM / US test
  files with and without their DICOM header, and synthetic blank, noise and tiny images),
  with the reason given for each.
"""

from __future__ import annotations

import argparse
import gzip
import logging
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import binomtest

from pneumoscan.dataset import training_split
from pneumoscan.imaging import ImageSource, decode_image
from pneumoscan.predictor import Predictor

logger = logging.getLogger("scope_rates")

#: scikit-image sample images that ship inside the package (no download).
SKIMAGE_IMAGES = ("astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea",
                  "clock", "coffee", "coins", "colorwheel", "grass", "gravel", "horse",
                  "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms",
                  "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text")
#: matplotlib sample data: photographs, a logo, and an MR head slice (raw 256 x 256).
MATPLOTLIB_IMAGES = ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png")
#: pydicom test files that are images of other modalities or body parts.
PYDICOM_FILES = ("CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm", "MR_small.dcm",
                 "examples_overlay.dcm", "JPEG2000.dcm", "examples_jpeg2k.dcm",
                 "image_dfl.dcm", "examples_rgb_color.dcm")


def non_xray_images(chest_xray: Path | None = None) -> Iterator[tuple[str, ImageSource]]:
    """``(name, source)`` of images that are not frontal chest radiographs."""
    import skimage.data

    for name in SKIMAGE_IMAGES:
        yield from _guarded(f"skimage:{name}", getattr(skimage.data, name))
    yield from _guarded("skimage:lfw_subset[0] (25 px face)",
                        lambda: skimage.data.lfw_subset()[0])

    for name in MATPLOTLIB_IMAGES:
        yield from _guarded(f"matplotlib:{name}", partial(_matplotlib_sample, name))
    yield from _guarded("matplotlib:s1045.ima (MR head)", _matplotlib_mr_head)
    from pydicom.data import get_testdata_file

    for name in PYDICOM_FILES:
        found = get_testdata_file(name)
        if not isinstance(found, str):
            continue
        yield f"pydicom:{name}", Path(found)
        # The same pixels without the header: only the image itself can tell.
        yield from _guarded(f"pydicom:{name} pixels only",
                            partial(_pixels_only, Path(found)))
    rng = np.random.default_rng(0)
    yield "synthetic: white page", np.full((1000, 800), 250, np.uint8)
    yield "synthetic: black frame", np.zeros((1000, 1000), np.uint8)
    yield "synthetic: uniform grey + faint noise", \
        np.clip(rng.normal(128, 3, (800, 800)), 0, 255).astype(np.uint8)
    yield "synthetic: uniform noise", rng.integers(0, 256, (512, 512), dtype=np.uint8)
    yield "synthetic: smooth gradient", \
        np.tile(np.linspace(0, 255, 600), (600, 1)).astype(np.uint8)
    if chest_xray is not None:
        first = sorted((chest_xray / "train" / "NORMAL").glob("*.jpeg"))[:1]
        for path in first:
            small = Image.open(path).convert("L").resize((40, 40))
            yield "synthetic: 40 px radiograph (tiny)", np.asarray(small)


def _guarded(name: str, make: Callable[[], ImageSource]) -> Iterator[tuple[str, ImageSource]]:
    try:
        yield name, make()
    except Exception as exc:  # a sample that needs a download, or a missing package
        logger.warning("left out %s: %s", name, exc)


def _matplotlib_sample(name: str) -> Path:
    from matplotlib import cbook

    return Path(cbook.get_sample_data(name, asfileobj=False))


def _pixels_only(path: Path) -> np.ndarray:
    return decode_image(path).pixels.copy()


def _matplotlib_mr_head() -> np.ndarray:
    from matplotlib import cbook

    path = Path(cbook.get_sample_data("s1045.ima.gz", asfileobj=False))
    raw = gzip.decompress(path.read_bytes())
    return np.frombuffer(raw, np.uint16).reshape(256, 256).astype(np.float32)


def validation_false_flags(predictor: Predictor, data: Path) -> tuple[int, int, list[str]]:
    """Flagged count, total and reasons on the model's own validation split."""
    validation = training_split(predictor.card, data).validation
    flagged, total, reasons = 0, 0, []
    for result in predictor.predict_files([s.path for s in validation], batch_size=32):
        if result.prediction is None:
            continue
        total += 1
        if not result.prediction.in_scope:
            flagged += 1
            reasons.append(f"{Path(result.file).name}: {result.prediction.scope_reason}"
                           f"{_distance(result.prediction.scope_distance)}")
    return flagged, total, reasons


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    interval = binomtest(successes, trials).proportion_ci(method="wilson")
    return interval.low, interval.high


def _distance(distance: float | None) -> str:
    return "" if distance is None else f" (distance {distance:.2f} x the cut-off)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="../shared/data/chest_xray")
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--dicom", type=Path, default=None,
                        help="folder of in-scope DICOMs (default: DATA/../dicom)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    predictor = Predictor.load(args.model, backend="torch")
    scope = predictor.scope
    print(f"model {predictor.version}; scope statistics: "
          + (f"features {scope.features.n_components} components, cut-off "
             f"{scope.features.max_distance:.2f}; layout {scope.layout.n_components} "
             f"components, cut-off {scope.layout.max_distance:.2f}" if scope is not None
             else "NOT FITTED (every image out of scope; run pneumoscan fit-scope)"))

    flagged, total, reasons = validation_false_flags(predictor, args.data)
    low, high = _wilson(flagged, total)
    print(f"\nfalse-flag rate on validation: {flagged}/{total} = {flagged / total:.2%} "
          f"(95% CI {low:.2%} to {high:.2%})")
    for reason in reasons:
        print(f"  flagged {reason}")

    dicom_dir = args.dicom or args.data.parent / "dicom"
    print("\nshared adult DICOM radiographs (should be in scope):")
    for path in sorted(dicom_dir.glob("*.dcm")):
        result = predictor.predict(path, heatmap=False)
        print(f"  {path.name}: {'in scope' if result.in_scope else result.scope_reason}"
              f"{_distance(result.scope_distance)}")

    detected, tried = 0, 0
    print("\nnon-X-ray images (should be out of scope):")
    for name, source in non_xray_images(args.data):
        try:
            result = predictor.predict(source, heatmap=False)
        except Exception as exc:  # report, don't stop: the rate is over what decodes
            print(f"  {name}: not decodable ({exc.__class__.__name__}), left out")
            continue
        tried += 1
        detected += not result.in_scope
        print(f"  {'FLAGGED' if not result.in_scope else 'missed '} {name}"
              + (f": {result.scope_reason}" if not result.in_scope else "")
              + _distance(result.scope_distance))
    low, high = _wilson(detected, tried)
    print(f"\ndetection rate on non-X-ray images: {detected}/{tried} = {detected / tried:.1%} "
          f"(95% CI {low:.1%} to {high:.1%})")


if __name__ == "__main__":
    main()
