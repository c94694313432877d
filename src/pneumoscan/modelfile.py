"""A model's files, found once: weights in ``safetensors`` and the card that describes them.

A model is a folder holding ``model.safetensors`` + ``model.json`` (what training writes),
or a ``NAME.safetensors`` file with a ``NAME.json`` beside it (how the shipped default is
stored). :func:`resolve_model` finds the files and reads the card once and returns a
:class:`ModelFiles`, which the Predictor, the backends, the fitted-state store
(:mod:`pneumoscan.fitted_state`) and the reports are handed instead of a path: nothing
below it looks a path up again, reads the card again or hashes the weights twice.

Loading reads tensors only: it cannot run code, unlike a pickle.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from pneumoscan.errors import ModelFileError
from pneumoscan.modelcard import CARD_NAME, ModelCard, load_card, write_card

if TYPE_CHECKING:

    from pneumoscan.models import PneumoniaNet

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class ModelFiles:
    """A model found on disk: where its files are, its card, and its weights' digest.

    Made by :func:`resolve_model` and passed down as it is. Fitted state (the ONNX export,
    the scope statistics, the population classifier, the training-file record) lies beside
    :attr:`weights`, named by :meth:`beside`, and is tied to them by
    :attr:`weights_sha256`: it depends on the network only, so models that share weights
    share it. What depends on the card (calibration, threshold) is in :attr:`card`.
    """

    source: Path | None  # what was asked for: a folder, a weights or card file; None: shipped
    weights: Path  # the safetensors file
    card_path: Path  # its model.json (or NAME.json)
    card: ModelCard

    @cached_property
    def weights_sha256(self) -> str:
        """SHA-256 of the weights file, hex, computed on first use and then kept: what ties
        the ONNX export and the fitted state to the weights they were made from."""
        with self.weights.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    @property
    def target(self) -> Path:
        """The model as a command line names it (the shipped weights when none was given)."""
        return self.weights if self.source is None else self.source

    def beside(self, suffix: str) -> Path:
        """A file beside the weights: ``FOLDER/model{suffix}`` or ``NAME{suffix}`` beside
        ``NAME.safetensors``."""
        return self.weights.with_suffix(suffix)



#: What names a model: a folder, a ``.safetensors`` or card file, None (the shipped model),
#: or one already resolved.
ModelLike: TypeAlias = ModelFiles | Path | str | None


def default_model_path() -> Path:
    """The model shipped inside the package (``pneumoscan/weights/default.safetensors``)."""
    return Path(str(resources.files("pneumoscan") / "weights" / "default.safetensors"))


def resolve_model(model: ModelLike) -> ModelFiles:
    """Find a model's files and read its card (a :class:`ModelFiles` is returned as it is).

    Args:
        model: a model folder, its ``.safetensors`` or card file, or None (the shipped one).

    Raises:
        ModelFileError: the weights or their card are missing, or the card is invalid.
    """
    if isinstance(model, ModelFiles):
        return model
    source = None if model is None else Path(model)
    path = default_model_path() if source is None else source
    card_path = _card_path(path)
    _require_file(card_path)
    card = load_card(card_path)  # first: what the card says may locate the weights
    weights = referenced_weights(card_path, card) or _weights_path(path)
    _require_file(weights)
    files = ModelFiles(source, weights, card_path, card)
    expected = card.site_calibration.get("parent", {}).get("weights_sha256")
    if expected and files.weights_sha256 != expected:
        raise ModelFileError(f"{card_path}: the parent weights it uses, {weights}, have "
                             "changed since this site calibration was fitted; run "
                             "`pneumoscan calibrate` again on the new parent model")
    return files


#: What a site card's ``site_calibration.parent.weights`` says for the shipped model's weights.
DEFAULT_WEIGHTS_REFERENCE = "default"


def referenced_weights(card_path: Path, card: ModelCard) -> Path | None:
    """The weights a site-calibrated model's folder uses by reference (its parent's file,
    unchanged: no 14 MB copy), or None when its card names none. The reference is
    ``site_calibration.parent.weights``: a path relative to the card's folder, an absolute
    one, or :data:`DEFAULT_WEIGHTS_REFERENCE` (the shipped model's). :func:`resolve_model`
    checks them against the parent's SHA-256 in the card, so replaced weights are refused
    rather than run under the site's threshold.

    Raises:
        ModelFileError: the referenced weights are missing.
    """
    parent = card.site_calibration.get("parent", {})
    reference = parent.get("weights") if isinstance(parent, dict) else None
    if not reference:
        return None
    weights = (default_model_path() if reference == DEFAULT_WEIGHTS_REFERENCE
               else (card_path.parent / reference).resolve())
    if not weights.is_file():
        raise ModelFileError(f"{card_path}: the parent weights it uses, {weights}, are "
                             "missing; run `pneumoscan calibrate` again on the parent model")
    return weights


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise ModelFileError(f"{path}: not found; pass --model with a training output "
                             "folder (model.safetensors + model.json)")


def _card_path(path: Path) -> Path:
    if path.is_dir():
        return path / CARD_NAME
    if path.suffix == ".json":
        return path
    beside = path.with_suffix(".json")
    if not beside.is_file() and (path.parent / CARD_NAME).is_file():
        return path.parent / CARD_NAME
    return beside


def _weights_path(path: Path) -> Path:
    """The one place a model's weights are located: ``model.safetensors`` in a model folder,
    ``NAME.safetensors`` beside ``NAME.json``, or the weights file named. Called after the
    card is read, so that a card naming other weights (a model that recalibrates another's
    unchanged network) can be followed here and nowhere else."""
    if path.is_dir():
        return path / WEIGHTS_NAME
    if path.suffix == ".json":
        return path.with_suffix(".safetensors")
    return path


def load_model(model: ModelLike = None) -> tuple[PneumoniaNet, ModelCard]:
    """Rebuild a model from its card and weights, in eval mode, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from pneumoscan.models import create_model

    files = resolve_model(model)
    card = files.card
    network = create_model(card.arch, pretrained=False, flip_average=card.flip_average)
    try:
        state = load_file(str(files.weights), device="cpu")
    except SafetensorError as exc:  # not safetensors (a pickle, say) or truncated
        raise ModelFileError(f"{files.weights}: not a readable safetensors file ({exc})") \
            from exc
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{files.weights}: weights do not match the '{card.arch}' "
                             f"architecture named in its model.json ({exc})") from exc
    network.eval()
    return network, card


def save_model(model: PneumoniaNet, card: ModelCard, folder: Path | str) -> Path:
    """Write ``model.safetensors`` + ``model.json`` into ``folder``; return the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"arch": card.arch})
    write_card(card, folder / CARD_NAME)
    return folder
