"""Model files: weights in ``safetensors`` beside a ``model.json`` that describes them.

A model is a folder holding ``model.safetensors`` + ``model.json`` (what training writes),
or a ``NAME.safetensors`` file with a ``NAME.json`` beside it (how the shipped default is
stored). Loading reads tensors only: it cannot run code, unlike a pickle.

The input-scope statistics (:class:`~pneumoscan.scope.ScopeStatistics`) are fitted state of
the model too: ``model.scope.safetensors`` (or ``NAME.scope.safetensors``) beside the
weights, arrays as tensors and numbers in its metadata, tied to the weights by their SHA-256
the way the ONNX export is.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pneumoscan.errors import ModelFileError
from pneumoscan.preprocessing import PreprocessConfig
from pneumoscan.scope import DistanceStatistics, ScopeStatistics

if TYPE_CHECKING:
    from pneumoscan.models import PneumoniaNet

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model.json"
FORMAT_VERSION = 1
#: Suffix of the scope statistics beside ``NAME.safetensors``, and their format's name.
SCOPE_SUFFIX = ".scope.safetensors"
SCOPE_FORMAT = "pneumoscan.scope/1"

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
    heatmap_scale: float = 0.0  # CAM value shown at full colour, the same for every image
    # (0: each image's own maximum, as models trained before November 2026 had it)
    threshold_rule: str = ""
    validation: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    training: dict[str, Any] = field(default_factory=dict)
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


def weights_digest(weights_path: Path) -> str:
    """SHA-256 of a weights file, hex: what ties the ONNX export and the scope statistics
    to the weights they were made from."""
    digest = hashlib.sha256()
    with weights_path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scope_path(model: Path | str | None) -> Path:
    """Where a model's scope statistics live: ``FOLDER/model.scope.safetensors`` or
    ``NAME.scope.safetensors`` beside ``NAME.safetensors``."""
    weights, _ = resolve_model_paths(model)
    return weights.with_suffix(SCOPE_SUFFIX)


def fit_scope_hint(model: Path | str | None) -> str:
    """The command that (re)fits a model's scope statistics."""
    target = default_model_path() if model is None else model
    return f"pneumoscan fit-scope {target} --data DATA"


def save_scope(statistics: ScopeStatistics, model: Path | str | None) -> Path:
    """Write ``statistics`` beside the model's weights (atomically); return the file."""
    from safetensors.numpy import save_file

    weights, _ = resolve_model_paths(model)
    tensors: dict[str, np.ndarray] = {}
    metadata = {"format": SCOPE_FORMAT, "weights_sha256": weights_digest(weights)}
    for part in ("features", "layout"):
        distance = getattr(statistics, part)
        for item in fields(DistanceStatistics):
            value = getattr(distance, item.name)
            if isinstance(value, np.ndarray):
                tensors[f"{part}.{item.name}"] = np.ascontiguousarray(value, np.float32)
            else:
                metadata[f"{part}.{item.name}"] = repr(value)
    path = scope_path(weights)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(path)
    return path


def drop_card_scope(model: Path | str | None) -> bool:
    """Remove the scope statistics that cards once held inside (a megabyte of JSON lists,
    now ignored); return whether there were any. Every other key stays as it was."""
    _, card_path = resolve_model_paths(model)
    data = json.loads(card_path.read_text())
    if "scope" not in data:
        return False
    del data["scope"]
    card_path.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    return True


def load_scope(model: Path | str | None) -> ScopeStatistics | None:
    """The model's scope statistics, or None when it has none for these weights.

    Statistics fitted for other weights (the weights were replaced, the statistics not
    refitted) are ignored with a warning: a stale fit would judge the wrong network.

    Raises:
        ModelFileError: the file exists but is not readable scope statistics.
    """
    from safetensors import SafetensorError, safe_open

    weights, _ = resolve_model_paths(model)
    path = scope_path(weights)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file ({exc}); refit it: "
                             f"{fit_scope_hint(model)}") from exc
    if metadata.get("format") != SCOPE_FORMAT:
        raise ModelFileError(f"{path}: format {metadata.get('format')!r}, expected "
                             f"{SCOPE_FORMAT!r}; refit it: {fit_scope_hint(model)}")
    if metadata.get("weights_sha256") != weights_digest(weights):
        logger.warning("%s was fitted for other weights than %s and is ignored: every image "
                       "will be out of scope until you run `%s`", path.name, weights,
                       fit_scope_hint(model))
        return None
    try:
        return ScopeStatistics(features=_distance_statistics("features", tensors, metadata),
                               layout=_distance_statistics("layout", tensors, metadata))
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: incomplete scope statistics ({exc}); refit them: "
                             f"{fit_scope_hint(model)}") from exc


def _distance_statistics(part: str, tensors: dict[str, np.ndarray],
                         metadata: dict[str, str]) -> DistanceStatistics:
    """One part of the stored statistics: arrays from the tensors, numbers from metadata."""
    def number(name: str) -> float:
        return float(metadata[f"{part}.{name}"])

    def array(name: str) -> np.ndarray:
        return np.asarray(tensors[f"{part}.{name}"], dtype=np.float64)

    return DistanceStatistics(
        mean=array("mean"), components=array("components"), variances=array("variances"),
        residual_variance=number("residual_variance"), max_distance=number("max_distance"),
        quantile_distance=number("quantile_distance"), margin=number("margin"),
        exceed_fraction=number("exceed_fraction"), n_images=int(metadata[f"{part}.n_images"]))
