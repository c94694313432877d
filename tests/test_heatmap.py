"""Heat maps: the model's evidence map, the model-wide scale, overlays."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.heatmap import (
    OVERLAY_OPACITY,
    _palette,
    _upsample,
    encode_png,
    heat_layer,
    heatmap_scale,
    legend_bar,
    overlay,
    scaled_heatmap,
    shrink_to_fit,
)


def test_scaled_heatmap_on_a_fixed_scale_is_not_stretched_to_its_own_peak() -> None:
    raw = np.array([[1.0, 2.0], [-3.0, 4.0]], np.float32)
    np.testing.assert_allclose(scaled_heatmap(raw, 8.0), [[0.125, 0.25], [0.0, 0.5]])
    np.testing.assert_allclose(scaled_heatmap(raw), [[0.25, 0.5], [0.0, 1.0]])
    assert scaled_heatmap(raw * 10, 8.0).max() == 1.0
    assert not scaled_heatmap(-np.abs(raw), 8.0).any()
    # positive values 1, 2, 4: the 50th percentile is 2, the 100th 4
    assert heatmap_scale(raw[None], percentile=50) == 2.0
    assert heatmap_scale(raw[None], percentile=100) == 4.0
    assert heatmap_scale(-np.abs(raw)[None]) == 0.0


def test_predicted_heatmap_is_the_evidence_of_its_own_forward_pass(tiny_model_dir: Path,
                                                                 ) -> None:
    from pneumoscan.predictor import Predictor
    from pneumoscan.preprocessing import normalize, resize

    predictor = Predictor.load(tiny_model_dir, backend="torch")
    image = np.random.default_rng(1).integers(0, 256, (300, 200), dtype=np.uint8)
    result = predictor.predict(image)
    config = predictor.card.preprocessing
    inputs = normalize(resize(image, config.image_size, config.source_size)[None], config)
    _, evidence, _ = predictor.backend.run(inputs)
    assert result.heatmap is not None and result.heatmap.dtype == np.float32
    assert result.heatmap.shape == evidence.shape[1:]  # the last feature map's grid
    assert float(result.heatmap.min()) >= 0.0 and float(result.heatmap.max()) <= 1.0
    np.testing.assert_allclose(result.heatmap,
                               scaled_heatmap(evidence[0], predictor.card.heatmap_scale),
                               atol=1e-6)
    np.testing.assert_allclose(predictor.raw_evidence(inputs[0]), evidence[0], atol=1e-6)
    assert predictor.predict(image, heatmap=False).heatmap is None


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


@pytest.mark.parametrize("greyed", [False, True])
def test_the_blend_table_gives_each_pixel_the_blend_s_own_value(greyed: bool) -> None:
    """overlay() looks each pixel up by its grey and heat levels: the same bytes as the
    blend computed over the image, on a film with every grey level under a smooth map and
    under a map varying across it."""
    grey = np.repeat(np.arange(256, dtype=np.uint8), 256).reshape(256, 256)
    pairs = set()
    for heatmap in (np.linspace(0, 1, 256 * 256, dtype=np.float32).reshape(256, 256).T,
                    np.random.default_rng(0).random((7, 9)).astype(np.float32)):
        smooth = _upsample(heatmap, (256, 256))
        base = np.asarray(Image.fromarray(grey).convert("RGB"), dtype=np.float32)
        colour = _palette(greyed)[smooth].astype(np.float32)
        weight = OVERLAY_OPACITY * smooth[..., None].astype(np.float32) / 255.0
        expected = np.clip(base * (1 - weight) + colour * weight, 0, 255).astype(np.uint8)
        assert np.array_equal(overlay(grey, heatmap, legend=False, greyed=greyed), expected)
        pairs |= set(zip(grey.ravel().tolist(), smooth.ravel().tolist(), strict=True))
    assert len(pairs) > 60_000  # of the 65,536 (grey, heat) pairs


def test_overlay_png_round_trip() -> None:
    png = encode_png(overlay(np.zeros((40, 30), np.uint8), np.ones((2, 2), np.float32)))
    assert png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).size == (30, 40 + legend_bar(30).shape[0])


def test_shrink_to_fit_only_shrinks_and_keeps_the_aspect_ratio() -> None:
    small = Image.new("L", (300, 120))
    assert shrink_to_fit(small, 1024) is small
    assert shrink_to_fit(Image.new("L", (3000, 1001)), 1024).size == (1024, 342)  # 341.67
    assert shrink_to_fit(Image.new("L", (500, 2000)), 1000).size == (250, 1000)
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
