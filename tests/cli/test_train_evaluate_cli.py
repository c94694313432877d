"""``pneumoscan train`` and ``pneumoscan evaluate`` end to end through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_adult_folder, make_synthetic_dataset
from pneumoscan import __version__
from pneumoscan.cli.main import app
from pneumoscan.fitted_state import load_population, load_scope, population_notes

runner = CliRunner()

TINY_CONFIG = """\
arch = "simple_cnn"
pretrained = false
image_size = 32
epochs = 2
batch_size = 8
lr = 0.003
threads = 1
"""


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"pneumoscan {__version__}"


@pytest.mark.slow
def test_train_then_evaluate(synthetic_dataset: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CONFIG)
    model = tmp_path / "model"
    adults = make_adult_folder(tmp_path / "adults", n_patients=12)
    result = runner.invoke(app, ["train", "--data", str(synthetic_dataset), "--out", str(model),
                                 "--config", str(config), "--seed", "1", "--adults",
                                 str(adults), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert (model / "model.safetensors").is_file() and (model / "model.json").is_file()
    # the model's checks are fitted beside it: scope, and population with --adults
    assert load_scope(model) is not None and load_population(model) is not None
    assert population_notes(model)["adults_held_out"] == "8"
    card = json.loads((model / "model.json").read_text())
    assert card["arch"] == "simple_cnn" and card["training"]["config"]["seed"] == 1
    assert card["training"]["epochs_run"] == 2
    assert "model written to" in result.stderr

    report = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", "--data", str(synthetic_dataset), "--out",
                                 str(report), "--model", str(model), "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n"] == 48 and metrics["threshold"] == card["threshold"]
    assert f"threshold {card['threshold']:.3f}" in result.stdout
    assert result.stdout.startswith("n=48  AUC ")
    assert (report / "report.html").is_file()
    # The model was trained on these very files: said loudly, and which split was scored.
    err = " ".join(result.stderr.split())
    assert "WARNING: the model has seen these images" in err
    assert "images this model was trained on" in err
    assert "evaluated the train split of" in err
    with (report / "predictions.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header == ["file", "true_label", "predicted_label", "probability",
                      "cause_probability", "overlap"]

    unseen = make_synthetic_dataset(tmp_path / "unseen", seed=7, n_patients=4,
                                    splits=("test", "train"))
    result = runner.invoke(app, ["evaluate", "--data", str(unseen), "--out",
                                 str(tmp_path / "report2"), "--model", str(model)])
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert "evaluated the test split of" in err and "has seen" not in err
    assert json.loads((tmp_path / "report2" / "metrics.json").read_text())["overlap"] == {
        "training": 0, "validation": 0, "protocol": 0, "edge": 0, "calibration": 0}


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_data_folder_is_a_one_line_error(command: str, tmp_path: Path,
                                                 tiny_model_dir: Path) -> None:
    missing = tmp_path / "no [such] data folder"  # spaces and brackets survive the console
    extra = ["--model", str(tiny_model_dir)] if command == "evaluate" else ["--seed", "0"]
    result = runner.invoke(app, [command, "--data", str(missing), "--out", str(tmp_path / "o"),
                                 *extra])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and str(missing) in errors[0], result.stderr
    assert not (tmp_path / "o").exists()


def test_resume_without_checkpoint_is_a_user_error(synthetic_dataset: Path,
                                                   tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CONFIG)
    result = runner.invoke(app, ["train", "--data", str(synthetic_dataset), "--out",
                                 str(tmp_path / "run"), "--config", str(config), "--resume"])
    assert result.exit_code == 2
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and "nothing to resume" in errors[0]


def test_unknown_config_key_is_a_user_error(synthetic_dataset: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("epochz = 3\n")
    result = runner.invoke(app, ["train", "--data", str(synthetic_dataset), "--out",
                                 str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 2
    assert "epochz" in " ".join(_error_lines(result.stderr))


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["fit-scope"],
                                     ["fit-population"], ["serve"], ["export"],
                                     ["dicom-node"], ["calibrate"], ["site-check"]])
def test_help_is_plain_and_fits_80_columns(command: list[str]) -> None:
    """No "<bool>" type noise, nothing cut mid-word ("..." or an ellipsis), no line over 80."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout and "\u2026" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for line in result.stdout.splitlines():
        cut = not line.startswith("Usage:") and line.rstrip().endswith(("\u2026", "..."))
        assert not cut, line  # the commands' one-line summaries are whole sentences
