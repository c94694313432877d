"""Input-scope check: image statistics and DICOM tags, the fitted distances, a model without
a fit, and the full Predictor on photographs, blank images, CT / MR files and real
radiographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.imaging import DecodedImage, DicomInfo, decode_image
from pneumoscan.predictor import Predictor
from pneumoscan.scope import (
    FEATURE_REASON,
    IN_SCOPE,
    LAYOUT_REASON,
    MIN_SIDE,
    NOT_FITTED,
    NOT_FITTED_REASON,
    THUMBNAIL_SIDE,
    DistanceStatistics,
    ScopeResult,
    ScopeStatistics,
    assess_scope,
    check_features,
    check_image,
    check_layout,
    fit_distance_statistics,
    fit_scope_statistics,
    is_chest_radiograph,
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


# ---------------------------------------------------------------- fitted distances


@pytest.fixture(scope="module")
def gaussian_features() -> np.ndarray:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(6, 40))
    return (rng.normal(size=(4000, 6)) * [5, 4, 3, 2, 1, 0.5]) @ basis \
        + rng.normal(scale=0.1, size=(4000, 40)) + 3.0


@pytest.fixture(scope="module")
def model_input(radiograph: np.ndarray) -> np.ndarray:
    """The radiograph as the model and the layout check see it: ``(160, 160)`` uint8."""
    return np.asarray(Image.fromarray(radiograph).resize((160, 160)))


@pytest.fixture(scope="module")
def radiograph_layout(model_input: np.ndarray) -> DistanceStatistics:
    """Layout statistics of shifted, rescaled, noisy copies of one radiograph."""
    rng = np.random.default_rng(0)
    copies = []
    for _ in range(300):
        dy, dx = rng.integers(-2, 3, size=2)
        shifted = np.roll(model_input, (dy, dx), axis=(0, 1)).astype(float)
        noisy = np.clip(shifted * rng.uniform(0.8, 1.2) + rng.normal(0, 6, shifted.shape),
                        0, 255).astype(np.uint8)
        copies.append(thumbnail(noisy))
    return fit_distance_statistics(np.stack(copies), max_components=16, explained=0.999,
                                   exceed_fraction=0.0025)


def test_fit_keeps_the_asked_share_of_training_beyond_the_cut_off(
        gaussian_features: np.ndarray) -> None:
    stats = fit_distance_statistics(gaussian_features, exceed_fraction=0.005, margin=1.2)
    assert stats.n_images == 4000
    assert stats.mean.shape == (40,) and stats.variances.shape == (stats.n_components,)
    assert stats.components.shape == (stats.n_components, 40)
    assert 2 <= stats.n_components <= 6  # the data live in 6 dimensions
    distances = np.array([stats.distance(f) for f in gaussian_features])
    assert np.mean(distances > stats.quantile_distance) == pytest.approx(0.005, abs=0.0015)
    assert stats.max_distance == pytest.approx(1.2 * stats.quantile_distance)
    assert np.mean(distances > stats.max_distance) < 0.005  # the margin only adds room
    rng = np.random.default_rng(1)
    # Off the training subspace, or far along it: flagged, the distance in its own field.
    outlier = gaussian_features.mean(0) + rng.normal(scale=3.0, size=40)
    result = check_features(outlier, stats)
    assert result == ScopeResult(False, FEATURE_REASON, stats.ratio(outlier))
    assert result.distance is not None and result.distance > 1.0
    far = gaussian_features.mean(0) + 10 * (gaussian_features[0] - gaussian_features.mean(0))
    assert not check_features(far, stats).in_scope


def test_fit_scope_statistics_splits_the_exceed_fraction(gaussian_features: np.ndarray) -> None:
    thumbnails = np.random.default_rng(0).normal(size=(500, THUMBNAIL_SIDE**2))
    stats = fit_scope_statistics(gaussian_features[:500], thumbnails, exceed_fraction=0.01)
    assert stats.features.exceed_fraction == stats.layout.exceed_fraction == 0.005
    assert (stats.features.margin, stats.layout.margin) == (1.2, 1.0)
    assert stats.layout.mean.shape == (THUMBNAIL_SIDE**2,)
    assert stats.layout.n_components == 16


def test_fitted_arrays_are_what_float32_storage_keeps(gaussian_features: np.ndarray) -> None:
    """The cut-off is measured with the arrays as stored, so it holds after a round trip."""
    stats = fit_distance_statistics(gaussian_features[:300])
    for values in (stats.mean, stats.components, stats.variances):
        assert values.dtype == np.float64
        np.testing.assert_array_equal(values, values.astype(np.float32))


def test_distance_by_hand() -> None:
    stats = DistanceStatistics(
        mean=np.array([1.0, 0.0, 0.0]), components=np.array([[1.0, 0.0, 0.0]]),
        variances=np.array([4.0]), residual_variance=0.5, max_distance=2.0,
        quantile_distance=2.0, margin=1.0, exceed_fraction=0.01, n_images=100)
    # centred (2, 1, 1): projection 2 -> 2**2 / 4 = 1; residual (0, 1, 1) -> 2 / 0.5 = 4
    vector = np.array([3.0, 1.0, 1.0])
    assert stats.distance(vector) == pytest.approx(np.sqrt(5.0))
    assert check_features(vector, stats) == ScopeResult(False, FEATURE_REASON,
                                                        pytest.approx(np.sqrt(5.0) / 2))
    assert check_features(np.array([2.0, 0.0, 0.0]), stats) == ScopeResult(True, "", 0.25)
    with pytest.raises(ValueError, match=r"3 dimensions, the input 4; refit.*fit-scope"):
        stats.distance(np.ones(4))


def test_fit_needs_ten_vectors() -> None:
    with pytest.raises(ValueError, match="N >= 10"):
        fit_distance_statistics(np.ones((3, 8)))


def test_fit_distance_statistics_caps_components() -> None:
    data = np.random.default_rng(0).normal(size=(200, 50))
    assert fit_distance_statistics(data, max_components=5, explained=0.999).n_components == 5


def test_thumbnail_is_exposure_blind_layout(radiograph: np.ndarray) -> None:
    image = radiograph
    vector = thumbnail(image)
    assert vector.shape == (THUMBNAIL_SIDE**2,) and vector.dtype == np.float32
    assert vector.min() >= 0.0 and vector.max() == 1.0
    # A monotonic exposure change (gamma) leaves the equalised thumbnail nearly unchanged.
    brighter = (255 * (image / 255.0) ** 0.6).astype(np.uint8)
    assert np.abs(thumbnail(brighter) - vector).mean() < 0.02


def test_layout_check_with_fitted_thumbnails(model_input: np.ndarray,
                                             radiograph_layout: DistanceStatistics) -> None:
    """The radiograph fits its copies' layout; transposed (lungs stacked vertically) and
    noise do not."""
    fits = check_layout(model_input, radiograph_layout)
    assert fits.in_scope and fits.distance is not None and 0.0 < fits.distance <= 1.0
    rotated = check_layout(np.ascontiguousarray(model_input.T[::-1]), radiograph_layout)
    assert not rotated.in_scope and rotated.reason == LAYOUT_REASON
    noise = np.random.default_rng(0).integers(0, 256, model_input.shape, dtype=np.uint8)
    assert not check_layout(noise, radiograph_layout).in_scope


def test_assess_scope_image_checks_then_layout_then_features(
        gaussian_features: np.ndarray, radiograph: np.ndarray, model_input: np.ndarray,
        radiograph_layout: DistanceStatistics) -> None:
    stats = ScopeStatistics(features=fit_distance_statistics(gaussian_features),
                            layout=radiograph_layout)
    blank = np.zeros((300, 300), np.uint8)
    assert "near-uniform" in assess_scope(_decoded(blank), blank[:160, :160],
                                          gaussian_features[0], stats).reason
    noise = np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)
    assert assess_scope(_decoded(noise), noise[:160, :160], gaussian_features[0],
                        stats).reason == LAYOUT_REASON
    decoded = _decoded(radiograph)
    far = assess_scope(decoded, model_input, gaussian_features[0] + 100.0, stats)
    assert far.reason == FEATURE_REASON and far.distance is not None and far.distance > 1
    near = assess_scope(decoded, model_input, gaussian_features[1], stats)
    assert near.in_scope and near.distance == pytest.approx(max(
        stats.layout.ratio(thumbnail(model_input)), stats.features.ratio(gaussian_features[1])))
    # A chest radiograph is what passes every check but, at most, the model's features:
    # the population check still answers for it (an adult's film is unlike the training's).
    assert is_chest_radiograph(near) and is_chest_radiograph(far)
    assert not is_chest_radiograph(assess_scope(_decoded(noise), noise[:160, :160],
                                                gaussian_features[0], stats))
    assert not is_chest_radiograph(assess_scope(_decoded(blank), blank[:160, :160],
                                                gaussian_features[0], stats))
    assert not is_chest_radiograph(NOT_FITTED)


def test_without_statistics_nothing_is_in_scope(radiograph: np.ndarray,
                                                model_input: np.ndarray) -> None:
    """An unfitted model says so, never "in scope"; the image checks still come first."""
    features = np.zeros(8)
    result = assess_scope(_decoded(radiograph), model_input, features, None)
    assert result == ScopeResult(False, NOT_FITTED_REASON, None)
    colour = assess_scope(_decoded(radiograph, was_color=True), model_input, features, None)
    assert "colour" in colour.reason


def test_reasons_are_words_without_numbers() -> None:
    for reason in (LAYOUT_REASON, FEATURE_REASON, NOT_FITTED_REASON):
        assert not any(character.isdigit() for character in reason)


# ---------------------------------------------------------------- the predictor, end to end


def test_a_model_without_a_scope_fit_calls_everything_out_of_scope(
        tiny_model_dir: Path, radiograph: np.ndarray) -> None:
    from skimage.data import astronaut, camera

    predictor = Predictor.load(tiny_model_dir, backend="torch")
    assert predictor.scope is None
    for pixels in (radiograph, camera()):
        result = predictor.predict(pixels, heatmap=False)
        assert (result.in_scope, result.scope_reason) == (False, NOT_FITTED_REASON)
        assert result.to_dict()["scope_distance"] is None
    photo = predictor.predict(astronaut(), heatmap=False)
    blank = predictor.predict(np.full((400, 400), 30, np.uint8), heatmap=False)
    assert not photo.in_scope and "colour" in photo.scope_reason
    assert not blank.in_scope and "near-uniform" in blank.scope_reason
    assert 0.0 <= photo.probability <= 1.0  # still predicted, but flagged


def test_shipped_model_keeps_radiographs_in_scope(shipped_predictor: Predictor,
                                                  chest_xray_dir: Path,
                                                  dicom_dir: Path) -> None:
    """Shared adult DICOMs, training-set images and their 4x up-scaled copies: in scope."""
    paths = sorted(dicom_dir.glob("*.dcm"))
    results = {p.name: shipped_predictor.predict(p, heatmap=False) for p in paths}
    # The deliberately mislabelled MONOCHROME1 file decodes, as its header says, to a
    # negative image: no radiograph the model knows looks like that, and flagging it is
    # right. (Its pixel-level inversion is tested in test_predictor.py.)
    negative = results.pop("cr_siim_pa_header_says_monochrome1.dcm")
    assert negative.scope_reason == LAYOUT_REASON
    assert all(r.in_scope for r in results.values()), {
        n: r.scope_reason for n, r in results.items() if not r.in_scope}
    assert all(r.scope_distance is not None and r.scope_distance <= 1.0
               for r in results.values())
    images = [p for cls in ("NORMAL", "PNEUMONIA")
              for p in sorted((chest_xray_dir / "train" / cls).glob("*.jpeg"))[:10]]
    flagged = []
    for path in images:
        small = np.asarray(Image.open(path).convert("L"))
        large = np.asarray(Image.fromarray(small).resize((896, 896), Image.Resampling.BICUBIC))
        for name, pixels in ((path.name, small), (f"{path.name} x4", large)):
            result = shipped_predictor.predict(pixels, heatmap=False)
            if not result.in_scope:
                flagged.append(f"{name}: {result.scope_reason}")
    assert len(flagged) <= 1, flagged  # at most 1 of 40, far above the ~1 % target


def test_shipped_model_flags_grey_photographs_and_scans(shipped_predictor: Predictor) -> None:
    """Grayscale photographs and CT / MR pixels (no DICOM header to help) are flagged; by
    the fitted distances, a reason in words and the distance beside it."""
    from skimage.data import camera, moon

    sources = {"camera": camera(), "moon": moon(),
               "CT pixels": decode_image(_testdata("693_J2KI.dcm")).pixels,
               "head CT pixels": decode_image(_testdata("J2K_pixelrep_mismatch.dcm")).pixels}
    results = {name: shipped_predictor.predict(pixels, heatmap=False)
               for name, pixels in sources.items()}
    # The 20261125 model, trained to ignore framing, borders and markings, lets one CT
    # slice's bare pixels through (0.88 x the cut-off; with its DICOM header the modality
    # refuses it): benchmarks/scope_rates.py measures 50/53 detections, 0/651 false flags.
    missed = [name for name, result in results.items() if result.in_scope]
    assert missed in ([], ["CT pixels"]), missed
    assert results["camera"].scope_reason in (LAYOUT_REASON, FEATURE_REASON)
    for result in results.values():  # some are caught sooner, by the image statistics
        if result.scope_reason in (LAYOUT_REASON, FEATURE_REASON):
            assert result.scope_distance is not None and result.scope_distance > 1.0
