"""Model files: weights in ``safetensors`` beside a ``model.json`` that describes them.

A model is a folder holding ``model.safetensors`` + ``model.json`` (what training writes),
or a ``NAME.safetensors`` file with a ``NAME.json`` beside it (how the shipped default is
stored). Loading reads tensors only: it cannot run code, unlike a pickle.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pneumoscan.errors import ModelFileError
from pneumoscan.preprocessing import PreprocessConfig

if TYPE_CHECKING:
    from pneumoscan.models import PneumoniaNet

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
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
    cause_temperature: float = 1.0  # same for the bacterial-vs-viral logit
    heatmap_scale: float = 0.0  # CAM value shown at full colour, the same for every image
    # (0: each image's own maximum, as models trained before November 2026 had it)
    threshold_rule: str = ""
    validation: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)  # input-scope statistics, if fitted
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


def default_model_path() -> Path:
    """The model shipped inside the package (``pneumoscan/weights/default.safetensors``)."""
    return Path(str(resources.files("pneumoscan") / "weights" / "default.safetensors"))


def resolve_model_paths(path: Path | str | None) -> tuple[Path, Path]:
    """Return ``(weights, card)`` paths for a model folder, a ``.safetensors`` file, or None.

    Raises:
        ModelFileError: the weights or their card are missing.
    """
    path = default_model_path() if path is None else Path(path)
    if path.is_dir():
        weights, card = path / WEIGHTS_NAME, path / CARD_NAME
    elif path.suffix == ".json":
        weights, card = path.with_suffix(".safetensors"), path
    else:
        weights = path
        card = path.with_suffix(".json")
        if not card.is_file() and (path.parent / CARD_NAME).is_file():
            card = path.parent / CARD_NAME
    for needed in (weights, card):
        if not needed.is_file():
            raise ModelFileError(f"{needed}: not found; pass --model with a training output "
                                 "folder (model.safetensors + model.json)")
    return weights, card


def read_card(path: Path | str | None) -> ModelCard:
    """Read the model card of a model folder or file (None: the shipped default)."""
    _, card_path = resolve_model_paths(path)
    try:
        data = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{card_path}: not valid JSON ({exc})") from exc
    return ModelCard.from_dict(data)


def load_model(path: Path | str | None = None) -> tuple[PneumoniaNet, ModelCard]:
    """Rebuild a model from its card and weights, in eval mode, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from pneumoscan.models import create_model

    weights_path, _ = resolve_model_paths(path)
    card = read_card(path)
    model = create_model(card.arch, pretrained=False)
    try:
        state = load_file(str(weights_path), device="cpu")
    except SafetensorError as exc:  # not safetensors (a pickle, say) or truncated
        raise ModelFileError(f"{weights_path}: not a readable safetensors file ({exc})") \
            from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{weights_path}: weights do not match the '{card.arch}' "
                             f"architecture named in its model.json ({exc})") from exc
    model.eval()
    return model, card


def save_model(model: PneumoniaNet, card: ModelCard, folder: Path | str) -> Path:
    """Write ``model.safetensors`` + ``model.json`` into ``folder``; return the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"arch": card.arch})
    (folder / CARD_NAME).write_text(json.dumps(card.to_dict(), indent=2, allow_nan=True) + "\n")
    return folder
