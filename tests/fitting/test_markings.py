"""Burned-in annotations and border bands: where they go and what they leave alone."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscan.fitting.markings import CORNERS, draw_annotation, draw_border, random_markings


@pytest.mark.parametrize("corner", CORNERS)
def test_annotation_lands_in_its_corner(corner: str) -> None:
    image = np.zeros((100, 100), np.float32)
    out = draw_annotation(image, "R", corner, size=0.15, value=1.0, boxed=True)
    rows, cols = np.nonzero(out > 0.5)
    assert rows.size > 0
    assert (rows.mean() < 50) == ("top" in corner)
    assert (cols.mean() < 50) == ("left" in corner)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_annotation_value_and_unknown_corner() -> None:
    image = np.ones((60, 60), np.float32)
    dark = draw_annotation(image, "2020-01-01 10:00", "top-right", 0.1, value=0.0)
    assert dark.min() < 0.5 and dark.max() == 1.0  # dark text on a white image
    with pytest.raises(ValueError, match="corner must be one of"):
        draw_annotation(image, "L", "middle", 0.1, 1.0)


def test_border_bands() -> None:
    image = np.full((50, 40), 0.5, np.float32)
    out = draw_border(image, (0.1, 0.0, 0.0, 0.25), 1.0)
    assert (out[:5] == 1.0).all() and (out[5:, :30] == 0.5).all() and (out[:, 30:] == 1.0).all()


def test_random_markings_are_seeded() -> None:
    image = np.full((80, 80), 0.4, np.float32)
    first = random_markings(image, np.random.default_rng(5), annotate=True, border=True)
    again = random_markings(image, np.random.default_rng(5), annotate=True, border=True)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, image)
    assert np.array_equal(random_markings(image, np.random.default_rng(5), annotate=False,
                                          border=False), image)


def test_frames_on_all_four_sides_when_asked() -> None:
    image = np.full((80, 80), 0.4, np.float32)
    framed = [random_markings(image, np.random.default_rng(seed), annotate=False, border=True,
                              frame=1.0) for seed in range(5)]
    for out in framed:
        edges = [out[0, 40], out[-1, 40], out[40, 0], out[40, -1]]
        assert all(v != 0.4 for v in edges)  # every side has its band


def test_without_frames_the_bands_are_drawn_as_before_frames_existed() -> None:
    """frame=0 takes no extra random number: the bands are those of the recipe before
    frames (four widths, then a coin per side, then the value), so older recipes reproduce."""
    image = np.full((80, 80), 0.4, np.float32)
    banded = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        widths = rng.uniform(0.02, 0.12, size=4)
        kept = [rng.random() < 0.5 for _ in widths]
        value = float(rng.choice([0.0, 1.0]))
        expected = draw_border(image, tuple(float(w) if keep else 0.0  # type: ignore[arg-type]
                                            for w, keep in zip(widths, kept, strict=True)),
                               value)
        banded += not np.array_equal(expected, image)
        np.testing.assert_array_equal(
            random_markings(image, np.random.default_rng(seed), annotate=False, border=True),
            expected)
    assert banded >= 3  # most seeds draw bands to compare
