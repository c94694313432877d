"""Input-scope check: image statistics and DICOM tags, the fitted feature distance, and the
full Predictor on photographs, blank images, CT / MR files and real radiographs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.imaging import DecodedImage, DicomInfo, decode_image
from pneumoscan.modelfile import default_model_path
from pneumoscan.predictor import Predictor
from pneumoscan.scope import (
    IN_SCOPE,
    MIN_SIDE,
    THUMBNAIL_SIDE,
    assess_scope,
    check_features,
    check_image,
    check_thumbnail,
    fit_distance_statistics,
    fit_scope_statistics,
    pca_distance,
    thumbnail,
)


def _decoded(pixels: np.ndarray, **kwargs: object) -> DecodedImage:
    return DecodedImage(pixels, "array", bool(kwargs.pop("was_color", False)),
                        **kwargs)  # type: ignore[arg-type]


def _testdata(name: str) -> Path:
    """A pydicom test file (shipped inside pydicom)."""
    from pydicom.data import get_testdata_file

    return Path(str(get_testdata_file(name)))


def _dicom(modality: str = "CR", body: str = "CHEST", view: str = "PA") -> DicomInfo:
    return DicomInfo(modality=modality, body_part=body, photometric="MONOCHROME2",
                     view_position=view)


@pytest.fixture(scope="module")
def radiograph(chest_xray_dir: Path) -> np.ndarray:
    path = sorted((chest_xray_dir / "train" / "NORMAL").glob("*.jpeg"))[0]
    return np.asarray(Image.open(path).convert("L"))


@pytest.fixture(scope="module")
def fitted() -> Predictor:
    """A trained model with fitted scope statistics: ``$PNEUMOSCAN_TEST_MODEL`` or the
    shipped one; skip when neither has them."""
    override = os.environ.get("PNEUMOSCAN_TEST_MODEL")
    if not override and not default_model_path().is_file():
        pytest.skip("no trained model: the shipped weights are not there yet; set "
                    "PNEUMOSCAN_TEST_MODEL to a trained model folder to run this test")
    predictor = Predictor.load(override or None, backend="torch")
    if not predictor.card.scope:
        pytest.skip(f"model {predictor.version} has no fitted scope statistics; run "
                    "benchmarks/fit_scope.py on it")
    return predictor


# ---------------------------------------------------------------- image statistics


def test_training_radiographs_and_shared_dicoms_pass_the_image_checks(
        chest_xray_dir: Path, dicom_dir: Path) -> None:
    paths = [p for cls in ("NORMAL", "PNEUMONIA")
             for p in sorted((chest_xray_dir / "train" / cls).glob("*.jpeg"))[:25]]
    paths += sorted(dicom_dir.glob("*.dcm"))
    for path in paths:
        assert check_image(decode_image(path)) == IN_SCOPE, path.name


def test_colour_photograph_is_flagged() -> None:
    from skimage.data import astronaut

    result = check_image(decode_image(astronaut()))
    assert not result.in_scope and "colour" in result.reason


@pytest.mark.parametrize(("pixels", "reason"), [
    (np.zeros((512, 512), np.uint8), "near-uniform"),
    (np.full((900, 700), 255, np.uint8), "near-uniform"),
    (np.full((300, 300), 128, np.uint8) + np.uint8(1) * (np.arange(300) % 2 == 0)[:, None],
     "near-uniform"),
    (np.zeros((40, 40), np.uint8), "too small"),
    (np.zeros((MIN_SIDE - 1, 500), np.uint8), "too small"),
    (np.tile(np.arange(256, dtype=np.uint8), (80, 4)), "aspect ratio"),
    (np.kron(np.indices((8, 8)).sum(0) % 2, np.ones((40, 40))).astype(np.uint8) * 255,
     "grey levels"),
    (np.pad(np.tile(np.arange(40, 240, dtype=np.uint8), (200, 1)), 150), "mostly black"),
])
def test_blank_tiny_and_drawn_images_are_flagged(pixels: np.ndarray, reason: str) -> None:
    result = check_image(_decoded(pixels))
    assert not result.in_scope
    assert reason in result.reason


def test_document_is_flagged() -> None:
    rng = np.random.default_rng(0)
    page = np.full((1100, 850), 252, np.uint8)
    for row in range(80, 1000, 40):  # lines of "text" with anti-aliased grey edges
        page[row:row + 12, 60:790] = rng.integers(0, 200, (12, 730), dtype=np.uint8)
    result = check_image(_decoded(page))
    assert not result.in_scope and "document" in result.reason


def test_the_radiograph_itself_passes(radiograph: np.ndarray) -> None:
    assert check_image(_decoded(radiograph)) == IN_SCOPE
    big = np.asarray(Image.fromarray(radiograph).resize((2000, 1800)))
    assert check_image(_decoded(big)) == IN_SCOPE


@pytest.mark.parametrize(("info", "reason"), [
    (_dicom(modality="CT"), "modality CT"),
    (_dicom(modality="MR"), "modality MR"),
    (_dicom(modality="US"), "modality US"),
    (_dicom(body="HEAD"), "body part HEAD"),
    (_dicom(body="SKULL"), "body part SKULL"),
    (_dicom(view="LL"), "lateral"),
])
def test_dicom_tags_flag_other_modalities_parts_and_views(radiograph: np.ndarray,
                                                          info: DicomInfo,
                                                          reason: str) -> None:
    result = check_image(_decoded(radiograph, dicom=info))
    assert not result.in_scope and reason in result.reason


@pytest.mark.parametrize("info", [_dicom(), _dicom("DX", "", ""), _dicom("CR", "chest", "AP"),
                                  _dicom("", "", "")])
def test_dicom_chest_radiograph_tags_pass(radiograph: np.ndarray, info: DicomInfo) -> None:
    assert check_image(_decoded(radiograph, dicom=info)) == IN_SCOPE


def test_real_ct_and_mr_dicoms_are_flagged_by_their_tags() -> None:
    for name, modality in (("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")):
        result = check_image(decode_image(_testdata(name)))
        assert not result.in_scope and f"modality {modality}" in result.reason


# ---------------------------------------------------------------- feature statistics


@pytest.fixture(scope="module")
def gaussian_features() -> np.ndarray:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(6, 40))
    return (rng.normal(size=(4000, 6)) * [5, 4, 3, 2, 1, 0.5]) @ basis \
        + rng.normal(scale=0.1, size=(4000, 40)) + 3.0


def test_fit_keeps_about_half_a_percent_of_training_beyond_the_cut_off(
        gaussian_features: np.ndarray) -> None:
    stats = fit_scope_statistics(gaussian_features)
    assert stats["n_images"] == 4000
    assert len(stats["mean"]) == 40 and len(stats["variances"]) == stats["n_components"]
    assert np.asarray(stats["components"]).shape == (stats["n_components"], 40)
    assert 2 <= stats["n_components"] <= 6  # the data live in 6 dimensions
    distances = np.array([pca_distance(f, stats) for f in gaussian_features])
    assert np.mean(distances > stats["quantile_distance"]) == pytest.approx(0.005, abs=0.0015)
    assert stats["max_distance"] == pytest.approx(1.2 * stats["quantile_distance"])
    assert np.mean(distances > stats["max_distance"]) < 0.005  # the margin only adds room
    rng = np.random.default_rng(1)
    # Off the training subspace, or far along it: flagged, with the distance in the reason.
    outlier = gaussian_features.mean(0) + rng.normal(scale=3.0, size=40)
    result = check_features(outlier, stats)
    assert not result.in_scope and "feature distance" in result.reason
    far = gaussian_features.mean(0) + 10 * (gaussian_features[0] - gaussian_features.mean(0))
    assert not check_features(far, stats).in_scope


def test_fit_statistics_are_json_ready(gaussian_features: np.ndarray) -> None:
    import json

    stats = fit_scope_statistics(gaussian_features[:500], exceed_fraction=0.01)
    again = json.loads(json.dumps(stats))
    assert again["exceed_fraction"] == 0.01
    assert check_features(gaussian_features[3], again) == check_features(
        gaussian_features[3], stats)


def test_pca_distance_by_hand() -> None:
    stats = {"mean": [1.0, 0.0, 0.0], "components": [[1.0, 0.0, 0.0]], "variances": [4.0],
             "residual_variance": 0.5}
    # centred (2, 1, 1): projection 2 -> 2**2 / 4 = 1; residual (0, 1, 1) -> 2 / 0.5 = 4
    assert pca_distance(np.array([3.0, 1.0, 1.0]), stats) == pytest.approx(np.sqrt(5.0))


def test_unfitted_statistics_pass_and_mismatches_are_explained() -> None:
    assert check_features(np.ones(8), {}) == IN_SCOPE
    assert check_thumbnail(np.zeros((64, 64), np.uint8), {}) == IN_SCOPE
    stats = fit_scope_statistics(np.random.default_rng(0).normal(size=(50, 8)))
    assert "thumbnail" not in stats and stats["exceed_fraction"] == 0.005
    with pytest.raises(ValueError, match="refit"):
        check_features(np.ones(9), stats)
    with pytest.raises(ValueError, match="N >= 10"):
        fit_scope_statistics(np.ones((3, 8)))


def test_thumbnail_is_exposure_blind_layout(radiograph: np.ndarray) -> None:
    image = radiograph
    vector = thumbnail(image)
    assert vector.shape == (THUMBNAIL_SIDE**2,) and vector.dtype == np.float32
    assert vector.min() >= 0.0 and vector.max() == 1.0
    # A monotonic exposure change (gamma) leaves the equalised thumbnail nearly unchanged.
    brighter = (255 * (image / 255.0) ** 0.6).astype(np.uint8)
    assert np.abs(thumbnail(brighter) - vector).mean() < 0.02


def test_layout_check_with_fitted_thumbnails(radiograph: np.ndarray) -> None:
    """Thumbnails of shifted, noisy copies of one radiograph: the radiograph fits, a
    mirror-free transposed version (lungs stacked vertically) and noise do not."""
    rng = np.random.default_rng(0)
    copies = []
    for _ in range(300):
        dy, dx = rng.integers(-8, 9, size=2)
        shifted = np.roll(radiograph, (dy, dx), axis=(0, 1)).astype(float)
        noisy = np.clip(shifted * rng.uniform(0.8, 1.2) + rng.normal(0, 6, shifted.shape),
                        0, 255).astype(np.uint8)
        copies.append(thumbnail(noisy))
    features = rng.normal(size=(300, 8))
    stats = fit_scope_statistics(features, np.stack(copies))
    layout = stats["thumbnail"]
    assert layout["exceed_fraction"] == stats["exceed_fraction"] == 0.0025  # split in two
    assert check_thumbnail(radiograph, layout) == IN_SCOPE
    rotated = check_thumbnail(np.ascontiguousarray(radiograph.T[::-1]), layout)
    assert not rotated.in_scope and "layout" in rotated.reason
    noise = rng.integers(0, 256, radiograph.shape, dtype=np.uint8)
    assert not check_thumbnail(noise, layout).in_scope
    assert "layout" in assess_scope(_decoded(noise), features[0], stats, noise).reason


def test_fit_distance_statistics_caps_components() -> None:
    data = np.random.default_rng(0).normal(size=(200, 50))
    stats = fit_distance_statistics(data, max_components=5, explained=0.999)
    assert stats["n_components"] == 5


def test_assess_scope_runs_image_checks_before_features(gaussian_features: np.ndarray,
                                                        radiograph: np.ndarray) -> None:
    stats = fit_scope_statistics(gaussian_features)
    blank = assess_scope(_decoded(np.zeros((300, 300), np.uint8)), gaussian_features[0], stats)
    assert "near-uniform" in blank.reason
    far = assess_scope(_decoded(radiograph), gaussian_features[0] + 100.0, stats)
    assert "feature distance" in far.reason
    assert assess_scope(_decoded(radiograph), gaussian_features[1], stats).in_scope


# ---------------------------------------------------------------- the predictor, end to end


def test_predictions_carry_scope(tiny_model_dir: Path) -> None:
    from skimage.data import astronaut

    predictor = Predictor.load(tiny_model_dir, backend="torch")
    photo = predictor.predict(astronaut(), heatmap=False)
    blank = predictor.predict(np.full((400, 400), 30, np.uint8), heatmap=False)
    assert not photo.in_scope and "colour" in photo.scope_reason
    assert not blank.in_scope and "near-uniform" in blank.scope_reason
    assert blank.to_dict()["in_scope"] is False
    assert 0.0 <= photo.probability <= 1.0  # still predicted, but flagged


def test_trained_model_keeps_radiographs_in_scope(fitted: Predictor, chest_xray_dir: Path,
                                                  dicom_dir: Path) -> None:
    """Shared adult DICOMs, training-set images and their 4x up-scaled copies: in scope."""
    paths = sorted(dicom_dir.glob("*.dcm"))
    results = {p.name: fitted.predict(p, heatmap=False) for p in paths}
    # The deliberately mislabelled MONOCHROME1 file decodes, as its header says, to a
    # negative image: no radiograph the model knows looks like that, and flagging it is
    # right. (Its pixel-level inversion is tested in test_predictor.py.)
    results.pop("cr_siim_pa_header_says_monochrome1.dcm")
    assert all(r.in_scope for r in results.values()), {
        n: r.scope_reason for n, r in results.items() if not r.in_scope}
    images = [p for cls in ("NORMAL", "PNEUMONIA")
              for p in sorted((chest_xray_dir / "train" / cls).glob("*.jpeg"))[:10]]
    flagged = []
    for path in images:
        small = np.asarray(Image.open(path).convert("L"))
        large = np.asarray(Image.fromarray(small).resize((896, 896), Image.Resampling.BICUBIC))
        for name, pixels in ((path.name, small), (f"{path.name} x4", large)):
            result = fitted.predict(pixels, heatmap=False)
            if not result.in_scope:
                flagged.append(f"{name}: {result.scope_reason}")
    assert len(flagged) <= 1, flagged  # at most 1 of 40, far above the ~1 % target


def test_trained_model_flags_grey_photographs_and_scans(fitted: Predictor) -> None:
    """Grayscale photographs and CT / MR pixels (no DICOM header to help) are flagged by
    the feature distance."""
    from skimage.data import camera, moon

    sources = {"camera": camera(), "moon": moon(),
               "CT pixels": decode_image(_testdata("693_J2KI.dcm")).pixels,
               "head CT pixels": decode_image(_testdata("J2K_pixelrep_mismatch.dcm")).pixels}
    missed = [name for name, pixels in sources.items()
              if fitted.predict(pixels, heatmap=False).in_scope]
    assert not missed
