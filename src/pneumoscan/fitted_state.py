"""The store for a model's fitted state: what is fitted after training, beside the weights.

Each kind of state (:class:`FittedKind`) is one safetensors file beside the weights
(``model{suffix}`` in a model folder, ``NAME{suffix}`` beside ``NAME.safetensors``): arrays
as tensors, numbers and strings in its metadata, with the format's name and the SHA-256 of
the weights it was made for. State made for other weights (replaced, not refitted) is
ignored with a warning, since it would describe another network.

The kinds: the input-scope statistics (:class:`~pneumoscan.scope.ScopeStatistics`,
:data:`SCOPE`) and the population classifier
(:class:`~pneumoscan.population.PopulationClassifier`, :data:`POPULATION`), both kept here,
and the record of the training files (:mod:`pneumoscan.training_files`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

import numpy as np

from pneumoscan.errors import ModelFileError
from pneumoscan.modelfile import ModelFiles, ModelLike, resolve_model
from pneumoscan.population import PopulationClassifier
from pneumoscan.scope import DistanceStatistics, ScopeStatistics

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class FittedKind:
    """One kind of fitted state: its file, its format, and how to make it again."""

    suffix: str  # beside NAME.safetensors: NAME{suffix}
    format: str  # stored in the metadata, checked on reading
    hint: str  # the command that makes it again; "{model}" names the model
    stale_consequence: str  # what ignoring it for other weights means, for the warning
    # True: a model whose weights are another's (a site calibration) keeps its own file of
    # this kind beside its card (the training-file record, which holds its own films)
    own_beside_card: bool = False

    def path(self, model: ModelLike) -> Path:
        """Where ``model``'s state of this kind lives."""
        files = resolve_model(model)
        if self.own_beside_card and files.card_path.parent != files.weights.parent:
            return files.card_path.with_suffix(self.suffix)
        return files.beside(self.suffix)

    def command(self, model: ModelLike) -> str:
        """:attr:`hint` for ``model``."""
        return self.hint.format(model=resolve_model(model).target)


SCOPE = FittedKind(".scope.safetensors", "pneumoscan.scope/1",
                   "pneumoscan fit-scope {model} --data DATA",
                   "every image will be out of scope")
POPULATION = FittedKind(".population.safetensors", "pneumoscan.population/1",
                        "pneumoscan fit-population {model} --data DATA --adults ADULT_IMAGES",
                        "the population of every image without an age in its DICOM header "
                        "will be unknown")


def write_fitted(model: ModelLike, kind: FittedKind, tensors: dict[str, np.ndarray],
                 metadata: dict[str, str]) -> Path:
    """The one writer of what is stored beside a model's weights: arrays as tensors and
    strings in the metadata, tied to the weights by their SHA-256, written to a partial
    file that then replaces the old one (a kill leaves the old file whole)."""
    from safetensors.numpy import save_file

    files = resolve_model(model)
    path = kind.path(files)
    partial = path.with_name(path.name + ".partial")
    save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()},
              str(partial), metadata={"format": kind.format,
                                      "weights_sha256": files.weights_sha256, **metadata})
    partial.replace(path)
    return path


def read_fitted(model: ModelLike, kind: FittedKind, *, warn_stale: bool = True,
                ) -> tuple[dict[str, np.ndarray], dict[str, str]] | None:
    """The tensors and metadata :func:`write_fitted` stored, or None when there are none
    for these weights (state made for other weights is ignored, with a warning that says
    what that means and how to make it again unless ``warn_stale`` is False).

    Raises:
        ModelFileError: the file exists but is not readable state of this kind.
    """
    from safetensors import SafetensorError, safe_open

    files = resolve_model(model)
    path = kind.path(files)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file ({exc}); make it "
                             f"again: {kind.command(files)}") from exc
    if metadata.get("format") != kind.format:
        raise ModelFileError(f"{path}: format {metadata.get('format')!r}, expected "
                             f"{kind.format!r}; make it again: {kind.command(files)}")
    if metadata.get("weights_sha256") != files.weights_sha256:
        if warn_stale:
            logger.warning("%s was made for other weights than %s and is ignored: %s until "
                           "you run `%s`", path.name, files.weights,
                           kind.stale_consequence, kind.command(files))
        return None
    return tensors, metadata


def load_fitted(model: ModelLike, kind: FittedKind,
                parse: Callable[[dict[str, np.ndarray], dict[str, str]], T],
                what: str) -> T | None:
    """``parse`` of the tensors and metadata :func:`read_fitted` returns, or None when there
    are none for these weights; a missing key or a bad value is reported as :func:`unreadable`
    with ``what`` (e.g. "incomplete scope statistics")."""
    files = resolve_model(model)
    stored = read_fitted(files, kind)
    if stored is None:
        return None
    try:
        return parse(*stored)
    except (KeyError, ValueError) as exc:
        raise unreadable(files, kind, what, exc) from exc


def unreadable(files: ModelFiles, kind: FittedKind, what: str,
               exc: Exception) -> ModelFileError:
    """The error for a file of ``kind`` whose content is incomplete or invalid."""
    return ModelFileError(f"{kind.path(files)}: {what} ({exc}); make it again: "
                          f"{kind.command(files)}")


# ---------------------------------------------------------------- scope statistics


def save_scope(statistics: ScopeStatistics, model: ModelLike) -> Path:
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
    return write_fitted(model, SCOPE, tensors, metadata)


def load_scope(model: ModelLike) -> ScopeStatistics | None:
    """The model's scope statistics, or None when it has none for these weights.

    Raises:
        ModelFileError: the file exists but is not readable scope statistics.
    """
    return load_fitted(model, SCOPE, lambda tensors, metadata: ScopeStatistics(
        features=_distance_statistics("features", tensors, metadata),
        layout=_distance_statistics("layout", tensors, metadata)),
        "incomplete scope statistics")


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


# ---------------------------------------------------------------- population classifier


def save_population(classifier: PopulationClassifier, model: ModelLike,
                    notes: dict[str, str] | None = None) -> Path:
    """Write ``classifier`` beside the model's weights (atomically); return the file.

    ``notes``: how it was fitted (kept in the file's metadata, read by the benchmark).
    """
    tensors = {name: getattr(classifier, name).astype(np.float32)
               for name in ("mean", "scale", "weight")}
    metadata = {name: repr(getattr(classifier, name))
                for name in ("bias", "threshold", "n_pediatric", "n_adult")}
    metadata.update({f"notes.{key}": value for key, value in (notes or {}).items()})
    return write_fitted(model, POPULATION, tensors, metadata)


def load_population(model: ModelLike) -> PopulationClassifier | None:
    """The model's population classifier, or None when it has none for these weights.

    Raises:
        ModelFileError: the file exists but is not a readable classifier.
    """
    return load_fitted(model, POPULATION, lambda tensors, metadata: PopulationClassifier(
        mean=tensors["mean"].astype(np.float64), scale=tensors["scale"].astype(np.float64),
        weight=tensors["weight"].astype(np.float64), bias=float(metadata["bias"]),
        threshold=float(metadata["threshold"]), n_pediatric=int(metadata["n_pediatric"]),
        n_adult=int(metadata["n_adult"])), "incomplete population classifier")


def population_notes(model: ModelLike) -> dict[str, str]:
    """The ``notes`` stored with the model's population classifier ({} when it has none)."""
    fitted = read_fitted(model, POPULATION, warn_stale=False)
    if fitted is None:
        return {}
    return {key.removeprefix("notes."): value for key, value in fitted[1].items()
            if key.startswith("notes.")}
