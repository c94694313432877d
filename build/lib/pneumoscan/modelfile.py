"""Model files: weights in ``safetensors`` beside a ``model.json`` that describes them.

A model is a folder holding ``model.safetensors`` + ``model.json`` (what training writes),
or a ``NAME.safetensors`` file with a ``NAME.json`` beside it (how the shipped default is
stored). Loading reads tensors only: it cannot run code, unlike a pickle.

The input-scope statistics (:class:`~pneumoscan.scope.ScopeStatistics`) are fitted state of
the model too: ``model.scope.safetensors`` (or ``NAME.scope.safetensors``) beside the
weights, arrays as tensors and numbers in its metadata, tied to the weights by their SHA-256
the way the ONNX export is. So is the population classifier
(:class:`~pneumoscan.population.PopulationClassifier`), in ``*.population.safetensors``.
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
from pneumoscan.population import PopulationClassifier
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
#: Suffix and format of the population classifier (:mod:`pneumoscan.population`).
POPULATION_SUFFIX = ".population.safetensors"
POPULATION_FORMAT = "pneumoscan.population/1"

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


def fitted_path(model: Path | str | None, suffix: str) -> Path:
    """Where a model's fitted state of one kind lives: ``FOLDER/model{suffix}`` or
    ``NAME{suffix}`` beside ``NAME.safetensors``."""
    weights, _ = resolve_model_paths(model)
    return weights.with_suffix(suffix)


def scope_path(model: Path | str | None) -> Path:
    """Where a model's scope statistics live (:func:`fitted_path` of :data:`SCOPE_SUFFIX`)."""
    return fitted_path(model, SCOPE_SUFFIX)


def population_path(model: Path | str | None) -> Path:
    """Where a model's population classifier lives (of :data:`POPULATION_SUFFIX`)."""
    return fitted_path(model, POPULATION_SUFFIX)


def fit_scope_hint(model: Path | str | None) -> str:
    """The command that (re)fits a model's scope statistics."""
    target = default_model_path() if model is None else model
    return f"pneumoscan fit-scope {target} --data DATA"


def fit_population_hint(model: Path | str | None) -> str:
    """The command that (re)fits a model's population classifier."""
    target = default_model_path() if model is None else model
    return f"pneumoscan fit-population {target} --data DATA --adults ADULT_IMAGES"


def save_scope(statistics: ScopeStatistics, model: Path | str | None) -> Path:
    """Write ``statistics`` beside the model's weights (atomically); return the file."""
    tensors: dict[str, np.ndarray] = {}
    metadata: dict[str, str] = {}
    for part in ("features", "layout"):
        distance = getattr(statistics, part)
        for item in fields(DistanceStatistics):
            value = getattr(distance, item.name)
            if isinstance(value, np.ndarray):
                tensors[f"{part}.{item.name}"] = value.astype(np.float32)
            else:
                metadata[f"{part}.{item.name}"] = repr(value)
    return write_fitted(model, SCOPE_SUFFIX, SCOPE_FORMAT, tensors, metadata)


def save_population(classifier: PopulationClassifier, model: Path | str | None,
                    notes: dict[str, str] | None = None) -> Path:
    """Write ``classifier`` beside the model's weights (atomically); return the file.

    ``notes``: how it was fitted (kept in the file's metadata, read by the benchmark).
    """
    tensors = {name: getattr(classifier, name).astype(np.float32)
               for name in ("mean", "scale", "weight")}
    metadata = {name: repr(getattr(classifier, name))
                for name in ("bias", "threshold", "n_pediatric", "n_adult")}
    metadata.update({f"notes.{key}": value for key, value in (notes or {}).items()})
    return write_fitted(model, POPULATION_SUFFIX, POPULATION_FORMAT, tensors, metadata)


def population_notes(model: Path | str | None) -> dict[str, str]:
    """The ``notes`` stored with the model's population classifier ({} when it has none)."""
    fitted = read_fitted(model, POPULATION_SUFFIX, POPULATION_FORMAT,
                          fit_population_hint(model), "")
    if fitted is None:
        return {}
    return {key.removeprefix("notes."): value for key, value in fitted[1].items()
            if key.startswith("notes.")}


def write_fitted(model: Path | str | None, suffix: str, file_format: str,
                 tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """The one writer of what is stored beside a model's weights (scope statistics,
    population classifier, training-file record): arrays as tensors and strings in the
    metadata, tied to the weights by their SHA-256, written to a partial file that then
    replaces the old one (a kill leaves the old file whole)."""
    from safetensors.numpy import save_file

    weights, _ = resolve_model_paths(model)
    path = fitted_path(weights, suffix)
    partial = path.with_name(path.name + ".partial")
    save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()},
              str(partial), metadata={"format": file_format,
                                      "weights_sha256": weights_digest(weights), **metadata})
    partial.replace(path)
    return path


def read_fitted(model: Path | str | None, suffix: str, file_format: str, hint: str,
                stale_consequence: str) -> tuple[dict[str, np.ndarray], dict[str, str]] | None:
    """The tensors and metadata :func:`write_fitted` stored, or None when there are none
    for these weights: state made for other weights (replaced, not refitted) is ignored
    with a warning that ends with ``stale_consequence``, since it would describe another
    network. ``hint`` is the command that makes the state again.

    Raises:
        ModelFileError: the file exists but is not readable state of ``file_format``.
    """
    from safetensors import SafetensorError, safe_open

    weights, _ = resolve_model_paths(model)
    path = fitted_path(weights, suffix)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file ({exc}); make it "
                             f"again: {hint}") from exc
    if metadata.get("format") != file_format:
        raise ModelFileError(f"{path}: format {metadata.get('format')!r}, expected "
                             f"{file_format!r}; make it again: {hint}")
    if metadata.get("weights_sha256") != weights_digest(weights):
        if stale_consequence:
            logger.warning("%s was made for other weights than %s and is ignored: %s until "
                           "you run `%s`", path.name, weights, stale_consequence, hint)
        return None
    return tensors, metadata


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

    Raises:
        ModelFileError: the file exists but is not readable scope statistics.
    """
    hint = fit_scope_hint(model)
    fitted = read_fitted(model, SCOPE_SUFFIX, SCOPE_FORMAT, hint,
                          "every image will be out of scope")
    if fitted is None:
        return None
    tensors, metadata = fitted
    try:
        return ScopeStatistics(features=_distance_statistics("features", tensors, metadata),
                               layout=_distance_statistics("layout", tensors, metadata))
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{scope_path(model)}: incomplete scope statistics ({exc}); "
                             f"refit them: {hint}") from exc


def load_population(model: Path | str | None) -> PopulationClassifier | None:
    """The model's population classifier, or None when it has none for these weights.

    Raises:
        ModelFileError: the file exists but is not a readable classifier.
    """
    hint = fit_population_hint(model)
    fitted = read_fitted(model, POPULATION_SUFFIX, POPULATION_FORMAT, hint,
                          "the population of every image without an age in its DICOM "
                          "header will be unknown")
    if fitted is None:
        return None
    tensors, metadata = fitted
    try:
        return PopulationClassifier(
            mean=tensors["mean"].astype(np.float64), scale=tensors["scale"].astype(np.float64),
            weight=tensors["weight"].astype(np.float64), bias=float(metadata["bias"]),
            threshold=float(metadata["threshold"]), n_pediatric=int(metadata["n_pediatric"]),
            n_adult=int(metadata["n_adult"]))
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{population_path(model)}: incomplete population classifier "
                             f"({exc}); refit it: {hint}") from exc


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
