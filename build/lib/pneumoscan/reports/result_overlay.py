"""The heat-map overlay that ``predict --cam-dir`` writes: it says what it shows.

A PNG found on its own, away from the CSV, must not be mistaken for something else: its
top-left corner carries the label and the probability (threshold beside it), and for a
result that is not applicable (out of scope, outside the validated population) the words
"not applicable" and why, instead of a bare label.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pneumoscan.heatmap import encode_png, overlay
from pneumoscan.predictor import Prediction

#: Colours of the corner's text: a finding, a normal result, a warning.
_RED, _GREEN, _AMBER = (255, 110, 110), (140, 235, 140), (255, 200, 60)


def corner_lines(prediction: Prediction) -> list[tuple[str, tuple[int, int, int]]]:
    """The corner's lines of text and their colours."""
    numbers = f"P(pneumonia) {prediction.probability:.3f}, threshold {prediction.threshold:.3f}"
    if prediction.applicable:
        colour = _RED if prediction.is_pneumonia else _GREEN
        return [(prediction.label, colour), (numbers, (255, 255, 255))]
    why = []
    if not prediction.in_scope:
        why.append("out of scope")
    if prediction.population_warning:
        why.append(f"population: {prediction.population}")
    return [("NOT APPLICABLE: " + ", ".join(why), _AMBER),
            (f"model output {prediction.label}, {numbers}", (220, 220, 220))]


def label_corner(rgb: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` uint8 with ``lines`` on a dark box in its top-left corner, in
    type scaled to the image's width (shrunk further if a line would not fit)."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    width = image.width
    size = max(9, width // 36)
    font = ImageFont.load_default(size=size)
    while size > 7 and max(draw.textlength(text, font=font) for text, _ in lines) > width - 8:
        size -= 1
        font = ImageFont.load_default(size=size)
    pad, leading = max(2, size // 3), round(size * 1.25)
    box_width = max(draw.textlength(text, font=font) for text, _ in lines) + 2 * pad
    box = Image.new("RGBA", (round(box_width), leading * len(lines) + 2 * pad), (0, 0, 0, 170))
    image.paste(box, (0, 0), box)
    for row, (text, colour) in enumerate(lines):
        draw.text((pad, pad + row * leading), text, fill=colour, font=font)
    return np.asarray(image)


def result_overlay_png(prediction: Prediction) -> bytes:
    """PNG bytes of the radiograph with its heat map, legend and the result in a corner.

    Raises:
        ValueError: the prediction holds no pixels or heat map (predict with heatmap=True).
    """
    if prediction.pixels is None or prediction.heatmap is None:
        raise ValueError("an overlay needs the prediction's pixels and heat map; predict "
                         "with heatmap=True")
    rgb = overlay(prediction.pixels, prediction.heatmap, alpha=0.4)
    return encode_png(label_corner(rgb, corner_lines(prediction)))
