"""Class activation maps: hand-computed values, exactness against the logit, overlays."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.heatmap import (
    OVERLAY_OPACITY,
    class_activation_map,
    colorize,
    heat_layer,
    heatmap_scale,
    legend_bar,
    overlay,
    overlay_png,
    raw_activation_map,
)


def test_cam_is_weighted_sum_clipped_and_scaled() -> None:
    features = np.zeros((2, 2, 3), np.float32)  # (C, h, w)
    features[0] = [[1, 2, 0], [0, 0, 4]]
    features[1] = [[0, 1, 0], [3, 0, 0]]
    cam = class_activation_map(features, np.array([1.0, -1.0]))
    # w . F = [[1, 1, 0], [-3, 0, 4]] -> clip at 0 -> divide by the peak 4
    np.testing.assert_allclose(cam, np.array([[0.25, 0.25, 0.0], [0.0, 0.0, 1.0]]))
    assert cam.dtype == np.float32


def test_cam_on_a_fixed_scale_is_not_stretched_to_its_own_peak() -> None:
    features = np.zeros((2, 2, 3), np.float32)
    features[0] = [[1, 2, 0], [0, 0, 4]]
    features[1] = [[0, 1, 0], [3, 0, 0]]
    weight = np.array([1.0, -1.0])
    # w . F = [[1, 1, 0], [-3, 0, 4]]; on a model-wide scale of 8 the peak shows at half
    cam = class_activation_map(features, weight, scale=8.0)
    np.testing.assert_allclose(cam, np.array([[0.125, 0.125, 0.0], [0.0, 0.0, 0.5]]))
    # weak evidence stays weak; evidence beyond the scale saturates at 1
    np.testing.assert_allclose(class_activation_map(features * 0.1, weight, scale=8.0).max(),
                               0.05)
    assert class_activation_map(features * 10, weight, scale=8.0).max() == 1.0


def test_raw_map_of_a_batch_and_the_scale_from_it() -> None:
    features = np.zeros((2, 1, 1, 2), np.float32)  # (B, C, h, w)
    features[0, 0] = [[1.0, -2.0]]
    features[1, 0] = [[3.0, 0.5]]
    raw = raw_activation_map(features, np.array([2.0]))
    np.testing.assert_allclose(raw, [[[2.0, -4.0]], [[6.0, 1.0]]])
    # positive values 2, 6, 1: the 50th percentile is 2, the 100th 6
    assert heatmap_scale(raw, percentile=50) == 2.0
    assert heatmap_scale(raw, percentile=100) == 6.0
    assert heatmap_scale(-np.abs(raw)) == 0.0


def test_cam_without_positive_evidence_is_all_zero() -> None:
    cam = class_activation_map(np.ones((3, 4, 4), np.float32), -np.ones(3))
    assert cam.shape == (4, 4)
    assert not cam.any()


def test_cam_is_exact_for_the_pooled_linear_head(tiny_model_dir: Path) -> None:
    """Mean of the unclipped CAM plus the bias equals the pneumonia logit (Zhou et al.)."""
    import torch

    from pneumoscan.modelfile import load_model

    model, _ = load_model(tiny_model_dir)
    batch = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 1, 64, 64))
                             .astype(np.float32))
    with torch.inference_mode():
        logits, features, _ = model.forward_with_features(batch)
    weight, bias = model.head.weight[0].detach().numpy(), float(model.head.bias[0].detach())
    raw = np.tensordot(weight, features[0].numpy(), axes=(0, 0))  # (h, w)
    assert float(raw.mean()) + bias == pytest.approx(float(logits[0, 0]), abs=1e-4)


def test_predicted_heatmap_shape_and_range(tiny_model_dir: Path) -> None:
    from pneumoscan.predictor import Predictor

    predictor = Predictor.load(tiny_model_dir, backend="torch")
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 200), dtype=np.uint8)
    result = predictor.predict(image)
    assert result.heatmap is not None
    assert result.heatmap.shape == (2, 2)  # 64 px input / 32 (simple_cnn's stride)
    assert result.heatmap.dtype == np.float32
    assert float(result.heatmap.min()) >= 0.0 and float(result.heatmap.max()) <= 1.0
    card = predictor.card
    expected = class_activation_map(*_features_and_weight(predictor, image),
                                    scale=card.heatmap_scale)
    np.testing.assert_allclose(result.heatmap, expected, atol=1e-5)
    assert predictor.predict(image, heatmap=False).heatmap is None


def _features_and_weight(predictor: object, image: np.ndarray) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    from pneumoscan.preprocessing import preprocess

    _, features, _ = predictor.backend.run(  # type: ignore[attr-defined]
        preprocess(image, predictor.card.preprocessing)[None])  # type: ignore[attr-defined]
    return features[0], predictor.head_weight[0]  # type: ignore[attr-defined]


def test_overlay_keeps_the_original_aspect_ratio() -> None:
    pixels = np.full((300, 120), 100, np.uint8)  # tall image (H=300, W=120)
    heatmap = np.array([[0.0, 1.0], [0.5, 0.0]], np.float32)
    blended = overlay(pixels, heatmap, legend=False)
    assert blended.shape == (300, 120, 3)
    assert blended.dtype == np.uint8
    big = overlay(np.zeros((3000, 1500), np.uint8), heatmap, max_side=1024, legend=False)
    assert big.shape == (1024, 512, 3)


def test_overlay_carries_a_legend_below_the_image() -> None:
    pixels = np.full((300, 120), 100, np.uint8)
    with_legend = overlay(pixels, np.zeros((2, 2), np.float32))
    bar = legend_bar(120)
    assert with_legend.shape == (300 + bar.shape[0], 120, 3)
    np.testing.assert_array_equal(with_legend[300:], bar)
    # the bar runs from jet's blue (none) to its red (strong), left to right
    row = bar[bar.shape[0] // 2]
    coloured = row[(row.max(axis=1) > 100) & (np.ptp(row, axis=1) > 100)]
    assert coloured[0, 2] > coloured[0, 0] and coloured[-1, 0] > coloured[-1, 2]


def test_no_evidence_leaves_the_radiograph_untinted() -> None:
    pixels = np.full((64, 64), 128, np.uint8)
    blended = overlay(pixels, np.zeros((2, 2), np.float32), legend=False)
    assert (blended == 128).all()


def test_overlay_is_hot_where_the_map_is_hot() -> None:
    pixels = np.full((64, 64), 128, np.uint8)
    heatmap = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    blended = overlay(pixels, heatmap, legend=False).astype(int)
    hot, cold = blended[5, 5], blended[60, 60]
    assert hot[2] < cold[2] - 30  # jet's top is dark red: blue falls where it is hot
    assert abs(int(hot[0]) - int(hot[2])) > 60  # coloured, not grey
    assert (cold == 128).all()  # cold regions keep the radiograph as it is


def test_colorize_and_png_round_trip() -> None:
    colour = colorize(np.array([[0.0, 1.0]], np.float32), (20, 10))
    assert colour.shape == (10, 20, 3)
    png = overlay_png(np.zeros((40, 30), np.uint8), np.ones((2, 2), np.float32))
    assert png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).size == (30, 40 + legend_bar(30).shape[0])


def test_a_greyed_overlay_has_no_colour() -> None:
    """The heat map of a result that does not apply, when asked for: grey, not a finding's
    colours (pneumoscan.result_meaning)."""
    pixels = np.tile(np.linspace(20, 230, 80).astype(np.uint8), (60, 1))
    heat = np.ones((4, 4), np.float32)
    for greyed, expect_colour in ((False, True), (True, False)):
        rgb = overlay(pixels, heat, greyed=greyed).astype(int)
        layer = heat_layer(heat, (16, 16), greyed=greyed)[..., :3].astype(int)
        for image in (rgb, layer):
            spread = np.abs(image - image.mean(axis=-1, keepdims=True)).max()
            assert (spread > 8) == expect_colour


def test_one_overlay_opacity_everywhere() -> None:
    """The overlays' opacity is one constant, and the page's slider starts at it."""
    import inspect
    import re
    from pathlib import Path

    import pneumoscan.server

    assert inspect.signature(overlay).parameters["alpha"].default == OVERLAY_OPACITY
    index = Path(pneumoscan.server.__file__).parent / "static" / "index.html"
    slider = re.search(r'id="opacity"[^>]*value="(\d+)"', index.read_text())
    assert slider is not None and int(slider.group(1)) == round(100 * OVERLAY_OPACITY)
    source = Path(pneumoscan.server.__file__).parents[1]
    for path in source.rglob("*.py"):  # no face draws a heat map at an opacity of its own
        text = path.read_text()
        if "pneumoscan.heatmap import" in text:
            assert "alpha=" not in text, path
