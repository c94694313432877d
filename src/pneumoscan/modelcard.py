"""The model card: ``model.json``, everything needed to rebuild, run and judge a model.

The card holds the architecture, the preprocessing, the class and cause names, the
calibration and the operating threshold (read from here, never from a global list), and how
the model was trained and validated. Where a model's files lie is
:mod:`pneumoscan.modelfile`'s business; this module only reads and writes the card itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pneumoscan.errors import ModelFileError
from pneumoscan.preprocessing import PreprocessConfig

CARD_NAME = "model.json"
FORMAT_VERSION = 1

#: Class names in output index order; a model card stores its own copy, the authority.
CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
#: Causes of pneumonia in index order of the cause head (P(bacterial) is the output).
CAUSE_NAMES: tuple[str, str] = ("viral", "bacterial")


@dataclass
class ModelCard:
    """Everything needed to rebuild, run and judge a model; stored as ``model.json``."""

    arch: str
    preprocessing: PreprocessConfig
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    cause_names: list[str] = field(default_factory=lambda: list(CAUSE_NAMES))
    outputs: list[str] = field(default_factory=lambda: ["pneumonia", "bacterial"])
    threshold: float = 0.5  # on the calibrated P(pneumonia), chosen on validation
    temperature: float = 1.0  # pneumonia logit is divided by this before the sigmoid
    bias: float = 0.0  # added to the pneumonia logit after the temperature (Platt scaling)
    cause_temperature: float = 1.0  # same for the bacterial-vs-viral logit
    heatmap_scale: float = 0.0  # evidence shown at full colour, the same for every image
    # (0: each image's own maximum, as models trained before November 2026 had it)
    flip_average: bool = False  # the network averages the image and its mirror image
    threshold_rule: str = ""
    validation: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    # Set by ``pneumoscan calibrate``: the site, its films, the parent model (version, weights
    # digest and where its unchanged weights are: see modelfile.referenced_weights) and the
    # local figures.
    site_calibration: dict[str, Any] = field(default_factory=dict)
    name: str = "pneumoscan"
    version: str = ""
    package_version: str = ""
    git_commit: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessing"] = self.preprocessing.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        try:
            values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            values["preprocessing"] = PreprocessConfig.from_dict(data["preprocessing"])
            card = cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"model.json is incomplete or invalid: {exc}") from exc
        if card.format_version > FORMAT_VERSION:
            raise ModelFileError(f"model.json format {card.format_version} is newer than this "
                                 f"pneumoscan reads ({FORMAT_VERSION}); upgrade pneumoscan")
        return card


def load_card(path: Path) -> ModelCard:
    """Read the card file ``path`` (a ``model.json`` or ``NAME.json``).

    Raises:
        ModelFileError: it is not JSON, or not a card this pneumoscan reads.
    """
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from exc
    return ModelCard.from_dict(data)


def write_card(card: ModelCard, path: Path) -> None:
    """Write ``card`` to ``path`` as indented JSON (NaN metrics kept as NaN)."""
    path.write_text(json.dumps(card.to_dict(), indent=2, allow_nan=True) + "\n")


def drop_card_scope(path: Path) -> bool:
    """Remove the scope statistics that cards once held inside (a megabyte of JSON lists,
    now ignored) from the card file ``path``; return whether there were any. Every other
    key stays as it was."""
    data = json.loads(path.read_text())
    if "scope" not in data:
        return False
    del data["scope"]
    path.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    return True
