"""Training checkpoints: ``checkpoint.safetensors`` (the model's weights and AdamW's moments
as tensors) plus ``checkpoint.json`` (epoch, history, best score), so that a run resumes
exactly where it stopped. No pickle anywhere: AdamW's per-parameter state is flattened to
``optim.<index>.<name>`` tensors and rebuilt on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pneumoscan.models import PneumoniaNet

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


def save_checkpoint(out: Path, model: PneumoniaNet, optimizer: torch.optim.AdamW,
                    state: dict[str, Any]) -> None:
    """Write the model, the AdamW moments and ``state`` (JSON) to ``out``, atomically."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for index, param_state in optimizer.state_dict()["state"].items():
        for key, value in param_state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().contiguous()
    tmp = out / (CHECKPOINT + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / CHECKPOINT)  # atomic: a kill mid-write leaves the old checkpoint
    (out / (CHECKPOINT_STATE + ".tmp")).write_text(json.dumps(state, indent=2))
    (out / (CHECKPOINT_STATE + ".tmp")).replace(out / CHECKPOINT_STATE)


def load_checkpoint(out: Path, model: PneumoniaNet,
                    optimizer: torch.optim.AdamW) -> dict[str, Any]:
    """Restore ``model`` and ``optimizer`` from ``out`` in place; return the saved state."""
    tensors = load_file(str(out / CHECKPOINT))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optim_state = optimizer.state_dict()
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    optim_state["state"] = per_param
    optimizer.load_state_dict(optim_state)
    return json.loads((out / CHECKPOINT_STATE).read_text())
