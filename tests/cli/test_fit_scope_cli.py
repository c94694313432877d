"""``pneumoscan fit-scope``: one command fits a model's scope check from its card and data."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from conftest import trained_looking_model
from pneumoscan.cli.main import app
from pneumoscan.dataset import training_split
from pneumoscan.fitted_state import load_scope
from pneumoscan.modelfile import resolve_model

runner = CliRunner()


def test_fit_scope_writes_statistics_beside_the_weights(tiny_model_dir: Path,
                                                        synthetic_dataset: Path,
                                                        tmp_path: Path) -> None:
    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    assert load_scope(model) is None
    result = runner.invoke(app, ["fit-scope", str(model), "--data", str(synthetic_dataset),
                                 "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert f"wrote {model / 'model.scope.safetensors'}" in result.stdout.replace("\n", "")
    scope = load_scope(model)
    assert scope is not None
    train = training_split(resolve_model(model).card, synthetic_dataset).train
    assert scope.features.n_images == 2 * len(train)
    assert f"fitted on {2 * len(train)} images" in result.stdout


def test_fit_scope_on_data_the_model_was_not_trained_on(tiny_model_dir: Path,
                                                        synthetic_dataset: Path,
                                                        tmp_path: Path) -> None:
    result = runner.invoke(app, ["fit-scope", str(tiny_model_dir), "--data",
                                 str(synthetic_dataset)])
    assert result.exit_code == 2
    assert "error:" in result.output and "seed and val_fraction" in result.output
    assert load_scope(tiny_model_dir) is None  # the session's tiny model stays unfitted
