"""The shift suite's transformations: deterministic, label-free, shape-preserving, and each
doing what its name says."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscan.fitting.shifts import (
    SHIFTS,
    apply_shift,
    centre_crop,
    shift_by_name,
    translate,
    zoom_out,
)


def _images(n: int = 3, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.linspace(40, 220, size, dtype=np.float32)[None, :] * np.ones((size, 1))
    return np.stack([np.clip(base + rng.normal(0, 5, (size, size)), 0, 255)
                     .astype(np.uint8) for _ in range(n)])


@pytest.mark.parametrize("shift", SHIFTS, ids=lambda s: s.name)
def test_every_shift_keeps_shape_and_dtype_and_is_deterministic(shift) -> None:  # type: ignore[no-untyped-def]
    images = _images()
    first = apply_shift(shift, images, seed=3)
    assert first.shape == images.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, apply_shift(shift, images, seed=3))
    np.testing.assert_array_equal(images, _images())  # the input is untouched
    # an image's result does not depend on the batch it came in
    np.testing.assert_array_equal(apply_shift(shift, images[:1], seed=3), first[:1])


def test_names_are_unique_and_the_clean_row_is_first_and_the_identity() -> None:
    names = [s.name for s in SHIFTS]
    assert len(names) == len(set(names)) and names[0] == "none"
    images = _images()
    np.testing.assert_array_equal(apply_shift(SHIFTS[0], images), images)
    assert {s.group for s in SHIFTS} >= {"framing", "orientation", "markings", "tone",
                                         "sharpness", "resolution", "noise"}
    with pytest.raises(KeyError, match="no shift named"):
        shift_by_name("rotate 90")


def test_every_real_shift_changes_the_image() -> None:
    images = _images()
    for shift in SHIFTS[1:]:
        assert not np.array_equal(apply_shift(shift, images), images), shift.name


def test_random_shifts_differ_between_seeds() -> None:
    images = _images()
    text = shift_by_name("burned-in text")
    assert not np.array_equal(apply_shift(text, images, seed=0),
                              apply_shift(text, images, seed=1))


def test_centre_crop_enlarges_the_middle() -> None:
    image = np.zeros((100, 100), np.uint8)
    image[:, 50:] = 200  # left half dark, right half bright
    image[:5] = 255  # a bright band along the top edge that a tight crop cuts off
    cropped = centre_crop(image, np.random.default_rng(0), keep=0.8)
    assert cropped.shape == image.shape
    assert cropped[:3].mean() < 150  # the top band is gone
    assert cropped[50, 10] < 20 and cropped[50, 90] > 180  # left stays dark, right bright


def test_zoom_out_pads_and_translate_moves() -> None:
    image = np.full((40, 40), 200, np.uint8)
    small = zoom_out(image, np.random.default_rng(0), scale=0.5)
    assert small[0, 0] == 0 and small[20, 20] == 200
    assert (small > 0).sum() == 20 * 20
    moved = translate(image, np.random.default_rng(0), dx=0.25, dy=0.0)
    assert (moved[:, :10] == 0).all() and (moved[:, 10:] == 200).all()


def test_flip_and_borders_and_markings_act_where_expected() -> None:
    images = _images(1)
    flipped = apply_shift(shift_by_name("horizontal flip"), images)
    np.testing.assert_array_equal(flipped[0], images[0][:, ::-1])
    black = apply_shift(shift_by_name("black border 8%"), images)[0]
    assert (black[:5] == 0).all() and (black[:, -5:] == 0).all()
    np.testing.assert_array_equal(black[10:-10, 10:-10], images[0][10:-10, 10:-10])
    white = apply_shift(shift_by_name("white border 8%"), images)[0]
    assert (white[:5] == 255).all()
    stamped = apply_shift(shift_by_name("timestamp + label + marker"), images)[0]
    changed = stamped != images[0]
    middle = changed[16:48, 16:48]
    assert changed.sum() > 20 and not middle.any()  # text in the corners, lungs untouched
