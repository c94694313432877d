"""Checkpoints: an exact, pickle-free round trip of the model and AdamW's state."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from pneumoscan.fitting.checkpoint import (
    CHECKPOINT,
    CHECKPOINT_STATE,
    load_checkpoint,
    save_checkpoint,
)
from pneumoscan.models import PneumoniaNet, create_model


def _trained_a_step(seed: int) -> tuple[PneumoniaNet, torch.optim.AdamW]:
    torch.manual_seed(seed)
    model = create_model("simple_cnn")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model(torch.randn(2, 1, 32, 32)).sum()
    loss.backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_restores_weights_and_optimizer_moments(tmp_path: Path) -> None:
    model, optimizer = _trained_a_step(seed=0)
    save_checkpoint(tmp_path, model, optimizer, {"epoch": 3, "best_auc": 0.9})

    fresh, fresh_optimizer = _trained_a_step(seed=1)  # different weights and moments
    state = load_checkpoint(tmp_path, fresh, fresh_optimizer)

    assert state == {"epoch": 3, "best_auc": 0.9}
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    saved, loaded = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    for index in saved:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(saved[index][key]),
                               torch.as_tensor(loaded[index][key]))


def test_files_are_safetensors_and_json_with_no_leftovers(tmp_path: Path) -> None:
    model, optimizer = _trained_a_step(seed=0)
    save_checkpoint(tmp_path, model, optimizer, {"epoch": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT, CHECKPOINT_STATE])
    with safe_open(str(tmp_path / CHECKPOINT), framework="pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("model.") for k in keys)
    assert any(k.startswith("optim.") and k.endswith(".exp_avg") for k in keys)
