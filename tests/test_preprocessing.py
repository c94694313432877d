"""The one preprocessing: squash-resize and normalise, parameters from the model."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscan.preprocessing import (
    PreprocessConfig,
    equalization_lut,
    normalize,
    resize,
    resize_all,
)


def test_resize_squashes_to_a_square_uint8() -> None:
    wide = np.zeros((30, 90), np.uint8)
    wide[:, 45:] = 200  # right half bright
    out = resize(wide, 16)
    assert out.shape == (16, 16) and out.dtype == np.uint8
    assert out[:, :7].max() == 0 and out[:, 9:].min() == 200  # the halves stay halves


def test_resize_leaves_the_right_size_alone() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    assert resize(pixels, 8) is pixels


def test_resize_is_nearly_resolution_independent() -> None:
    """An 8x larger copy of an image and the image itself give nearly the same input."""
    yy, xx = np.mgrid[0:64, 0:64] / 64
    small = (127 + 100 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.uint8)
    large = np.kron(small, np.ones((8, 8), np.uint8))  # (512, 512)
    difference = resize(large, 32).astype(int) - resize(small, 32).astype(int)
    assert np.abs(difference).mean() < 1.5


def test_normalize_maps_gray_levels_to_standard_scores() -> None:
    config = PreprocessConfig(image_size=2)
    pixels = np.array([[0, 255], [115, 51]], np.uint8)
    out = normalize(pixels, config)
    assert out.shape == (1, 2, 2) and out.dtype == np.float32
    expected = (np.array([[0, 255], [115, 51]]) / 255 - 0.449) / 0.226
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    assert out[0, 0, 0] == pytest.approx(-1.98673, abs=1e-5)  # -0.449 / 0.226
    assert out[0, 0, 1] == pytest.approx(2.43805, abs=1e-5)  # 0.551 / 0.226


@pytest.mark.parametrize("equalize", [False, True])
def test_normalize_gives_the_values_of_scaling_step_by_step(equalize: bool) -> None:
    """The one float table per image changes nothing: the same float32 values, bit for bit,
    as equalising, scaling and standardising the pixels array-wide, step by step."""
    config = PreprocessConfig(image_size=24, mean=0.449, std=0.226, equalize=equalize)
    batch = np.random.default_rng(3).integers(40, 200, (3, 24, 24), dtype=np.uint8)
    levels = np.stack([np.take(equalization_lut(image), image) for image in batch]) \
        if equalize else batch
    expected = ((levels.astype(np.float32) / 255.0 - config.mean) / config.std)[:, None]
    np.testing.assert_array_equal(normalize(batch, config), expected)


def test_equalization_spreads_levels_over_the_full_range() -> None:
    narrow = np.random.default_rng(4).integers(100, 140, (32, 32), dtype=np.uint8)
    lut = equalization_lut(narrow)
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    out = np.take(lut, narrow)
    assert (out.min(), out.max()) == (0, 255)
    assert (np.diff(lut.astype(int)) >= 0).all()  # monotonic: the order of levels is kept
    flat = np.full((8, 8), 77, np.uint8)  # one level: maps to 0, no division by zero
    assert equalization_lut(flat)[77] == 0


@pytest.mark.parametrize("frame_level", [0, 255])
def test_equalising_midtones_leaves_a_frame_out_of_the_film_tones(frame_level: int) -> None:
    """A frame of pure white or black, a third of the pixels, moves every tone of the film
    when every level counts; counted on grey levels 1-254 it moves none of them."""
    film = np.random.default_rng(5).integers(1, 255, (48, 48), dtype=np.uint8)
    framed = film.copy()
    framed[:8], framed[-8:], framed[:, :8], framed[:, -8:] = (frame_level,) * 4
    inner = (slice(8, -8), slice(8, -8))
    plain = np.take(equalization_lut(film[inner], midtones=True), film[inner])
    equalised = np.take(equalization_lut(framed, midtones=True), framed)
    assert np.array_equal(equalised[inner], plain)
    assert equalised[0, 0] == frame_level
    assert not np.array_equal(np.take(equalization_lut(framed), framed)[inner], plain)
    config = PreprocessConfig(image_size=48, equalize=True, equalize_midtones=True)
    assert PreprocessConfig.from_dict(config.to_dict()) == config


def test_normalize_keeps_the_batch_axis() -> None:
    batch = np.zeros((5, 4, 4), np.uint8)
    assert normalize(batch, PreprocessConfig(image_size=4)).shape == (5, 1, 4, 4)


def test_config_round_trip_and_validation() -> None:
    config = PreprocessConfig(image_size=96, mean=0.5, std=0.2)
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert PreprocessConfig.from_dict({"image_size": 64, "unknown": 1}) == \
        PreprocessConfig(image_size=64)
    with pytest.raises(ValueError, match="'crop'"):
        PreprocessConfig.from_dict({"resize": "crop"})


def test_resize_all_stacks_the_one_resize() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((40, 30), (64, 64))]
    out = resize_all(iter(images), 32)
    assert out.shape == (2, 32, 32) and out.dtype == np.uint8
    for image, resized in zip(images, out, strict=True):
        np.testing.assert_array_equal(resized, resize(image, 32))


def test_resize_through_the_source_size_is_the_path_of_a_training_image() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (1100, 900), dtype=np.uint8)
    via = resize(big, 64, source_size=224)
    # by hand: an area filter to 224, then the antialiased bilinear to 64
    at_224 = Image.fromarray(big).resize((224, 224), Image.Resampling.BOX)
    np.testing.assert_array_equal(via, np.asarray(at_224.resize((64, 64),
                                                                Image.Resampling.BILINEAR)))
    # a 224 px image (a training image) takes the same path from there on
    np.testing.assert_array_equal(resize(np.asarray(at_224), 64, source_size=224), via)
    # a smaller image is enlarged to the source size bilinearly first
    small = rng.integers(0, 256, (150, 120), dtype=np.uint8)
    up = Image.fromarray(small).resize((224, 224), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(resize(small, 64, source_size=224),
                                  np.asarray(up.resize((64, 64), Image.Resampling.BILINEAR)))
    assert resize_all([big, small], 64, 224).shape == (2, 64, 64)
