"""Export a model to ONNX, check the graph, and measure its agreement with PyTorch.

The graph takes the ``(B, 1, S, S)`` output of :func:`~pneumoscan.preprocessing.normalize`
(batch axis dynamic) and returns the logits ``(B, 2)``, the pneumonia evidence ``(B, h, w)``
(the heat map) and the pooled vector ``(B, C)``, so the heat map and the scope and
population checks work without PyTorch. Export goes
through a temporary file: the ONNX file only appears beside the model once
``onnx.checker`` and the numeric comparison with PyTorch have passed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan import __version__
from pneumoscan.decision import decide
from pneumoscan.errors import PneumoscanError
from pneumoscan.imaging import load_image
from pneumoscan.inference import run_batches
from pneumoscan.inputs import find_images
from pneumoscan.modelcard import ModelCard
from pneumoscan.modelfile import ModelLike, resolve_model
from pneumoscan.onnx_backend import (
    INPUT_NAME,
    OUTPUT_NAMES,
    WEIGHTS_DIGEST_KEY,
    OnnxBackend,
    onnx_path_for,
)
from pneumoscan.preprocessing import resize

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
#: Largest absolute difference allowed between ONNX and PyTorch logits.
LOGIT_TOLERANCE = 1e-4
#: Same for the evidence map and the pooled vector, relative to their largest absolute value.
FEATURE_TOLERANCE = 1e-4


class OnnxParityError(PneumoscanError, RuntimeError):
    """The ONNX graph does not compute what the PyTorch model computes."""


@dataclass(frozen=True)
class ParityReport:
    """How closely the ONNX graph reproduces PyTorch on the same preprocessed images."""

    n_images: int
    max_abs_diff_logits: float
    max_rel_diff_features: float  # max |difference| / max |torch value|, evidence and pooled
    same_labels: int  # images given the same label (and cause, when pneumonia) by both
    source: str  # "X-ray" (real images) or "random" (synthetic inputs)

    @property
    def passed(self) -> bool:
        return (self.max_abs_diff_logits <= LOGIT_TOLERANCE
                and self.max_rel_diff_features <= FEATURE_TOLERANCE
                and self.same_labels == self.n_images)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def describe(self) -> str:
        return (f"{self.n_images} {self.source} inputs: max |logit diff| "
                f"{self.max_abs_diff_logits:.2e} (limit {LOGIT_TOLERANCE:.0e}), evidence and "
                f"pooled {self.max_rel_diff_features:.2e} relative, same labels "
                f"{self.same_labels}/{self.n_images}")


def export_onnx(model_path: ModelLike = None, out: Path | str | None = None, *,
                opset: int = DEFAULT_OPSET, check_images: Sequence[Path] = (),
                ) -> tuple[Path, ParityReport]:
    """Write the ONNX export of a model after checking it.

    Args:
        model_path: a model folder, a ``.safetensors`` file, or None (the shipped model).
        out: the ONNX file to write (default: beside the weights, see
            :func:`~pneumoscan.onnx_backend.onnx_path_for`, where the onnx backend looks).
        opset: ONNX opset version.
        check_images: real X-rays to compare ONNX and PyTorch on. With none, the check
            runs on random inputs, which catches a broken graph but not every numeric drift.

    Returns:
        The ONNX path and the comparison with PyTorch.

    Raises:
        ModelFileError: the model is missing or invalid.
        OnnxParityError: the graph's outputs differ from PyTorch's beyond the tolerances.
    """
    import onnx

    from pneumoscan.modelfile import load_model

    files = resolve_model(model_path)
    out = Path(out) if out is not None else onnx_path_for(files)
    model, card = load_model(files)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.stem}.{os.getpid()}.tmp.onnx")  # same file system
    try:
        _trace_to_onnx(model, card.preprocessing.image_size, temporary, opset)
        graph = onnx.load(str(temporary))
        _add_metadata(graph, card, files.weights_sha256)
        onnx.checker.check_model(graph, full_check=True)
        onnx.save(graph, str(temporary))
        report = compare_with_torch(files, temporary, check_images)
        if not report.passed:
            raise OnnxParityError(f"the ONNX export differs from PyTorch: {report.describe()}")
        temporary.replace(out)
    finally:
        temporary.unlink(missing_ok=True)
    logger.debug("wrote %s (%.1f MB); %s", out, out.stat().st_size / 1e6, report.describe())
    return out, report


def _trace_to_onnx(model: Any, image_size: int, path: Path, opset: int) -> None:
    """Trace ``forward_with_evidence`` into ``path`` with a dynamic batch axis."""
    import warnings

    import torch

    class LogitsAndEvidence(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return self.model.forward_with_evidence(x)  # type: ignore[no-any-return]

    # The exporter restores the wrapper's mode after tracing; a new module is in training
    # mode, which would switch the model's BatchNorm and dropout to training afterwards.
    wrapper = LogitsAndEvidence().eval()
    example = torch.zeros(2, 1, image_size, image_size)
    batch_axis = {0: "batch"}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript and gives the same graph for these plain CNNs.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={name: batch_axis for name in (INPUT_NAME,
                                                                      *OUTPUT_NAMES)},
                          opset_version=opset, do_constant_folding=True)


def _add_metadata(graph: Any, card: ModelCard, digest: str) -> None:
    import onnx

    graph.producer_name = "pneumoscan"
    graph.producer_version = __version__
    size = card.preprocessing.image_size
    graph.doc_string = (f"{card.name} {card.version or card.arch}: (B, 1, {size}, {size}) "
                        "preprocessed X-rays -> logits (B, 2) [pneumonia, bacterial], the "
                        "pneumonia evidence (B, h, w) and the pooled features (B, C)")
    entries = {WEIGHTS_DIGEST_KEY: digest, "pneumoscan.arch": card.arch,
               "pneumoscan.version": card.version,
               "pneumoscan.image_size": str(size)}
    onnx.helper.set_model_props(graph, entries)


def sample_images(folder: Path | str, limit: int) -> list[Path]:
    """Up to ``limit`` of the images :func:`~pneumoscan.inputs.find_images` finds
    under ``folder``, spread evenly over the sorted listing (so both class folders are
    represented): what ``--check-data`` compares ONNX and PyTorch on."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of X-rays to check the export on")
    found = find_images(folder)
    if not found:
        raise FileNotFoundError(f"{folder}: holds no .jpeg/.jpg/.png/.dcm image")
    if len(found) <= limit:
        return found
    return [found[i] for i in np.linspace(0, len(found) - 1, limit).round().astype(int)]


def compare_with_torch(model_path: ModelLike, onnx_path: Path | str,
                       images: Sequence[Path] = (), *, batch_size: int = 32) -> ParityReport:
    """Run the PyTorch model and the ONNX graph on the same inputs and compare them.

    Args:
        model_path: the model the graph was exported from.
        onnx_path: the ONNX file.
        images: X-rays, decoded and preprocessed as the Predictor does; with none, eight
            deterministic random images are used instead.
        batch_size: images per forward pass.
    """
    from pneumoscan.backends import TorchBackend

    files = resolve_model(model_path)
    card = files.card
    size = card.preprocessing.image_size
    if images:
        resized = np.stack([resize(load_image(p), size, card.preprocessing.source_size)
                            for p in images])  # (N, S, S)
    else:
        resized = np.random.default_rng(0).integers(0, 256, (8, size, size), dtype=np.uint8)
    torch_outputs = run_batches(TorchBackend(files).run, resized, card.preprocessing,
                                batch_size=batch_size)
    onnx_outputs = run_batches(OnnxBackend(files, onnx_path=onnx_path).run, resized,
                               card.preprocessing, batch_size=batch_size)
    logit_diff = float(np.abs(onnx_outputs[0] - torch_outputs[0]).max())
    feature_diff = max(float(np.abs(found - expected).max())  # evidence, pooled
                       / max(float(np.abs(expected).max()), 1e-12)
                       for expected, found in zip(torch_outputs[1:], onnx_outputs[1:],
                                                  strict=True))
    by_torch, by_onnx = decide(torch_outputs[0], card), decide(onnx_outputs[0], card)
    same = int(np.sum((by_torch.label_index == by_onnx.label_index)
                      & (by_torch.cause_index == by_onnx.cause_index)))
    return ParityReport(len(resized), logit_diff, feature_diff, same,
                        "X-ray" if images else "random")
