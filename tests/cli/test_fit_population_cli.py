"""``pneumoscan fit-population``: one command fits a model's population check."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from conftest import make_adult_folder, trained_looking_model
from pneumoscan.cli.main import app
from pneumoscan.fitted_state import load_population, population_notes

runner = CliRunner()


def test_fit_population_writes_the_classifier_beside_the_weights(
        tiny_model_dir: Path, synthetic_dataset: Path, tmp_path: Path) -> None:
    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    adults = make_adult_folder(tmp_path / "adults", n_patients=12)
    result = runner.invoke(app, ["fit-population", str(model), "--data",
                                 str(synthetic_dataset), "--adults", str(adults),
                                 "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    output = result.stdout.replace("\n", "")
    assert f"wrote {model / 'model.population.safetensors'}" in output
    assert "adults: 16 adult images fitted on, 8 of 4 patients held out" in output
    assert load_population(model) is not None
    assert population_notes(model)["adults_held_out"] == "8"


def test_fit_population_on_several_folders(tiny_model_dir: Path, synthetic_dataset: Path,
                                          tmp_path: Path) -> None:
    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    first = make_adult_folder(tmp_path / "first", n_patients=12)
    second = make_adult_folder(tmp_path / "second", n_patients=6)
    result = runner.invoke(app, ["fit-population", str(model), "--data",
                                 str(synthetic_dataset), "--adults", str(first), "--adults",
                                 str(second), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    output = result.stdout.replace("\n", "")
    assert "first: 16 adult images fitted on" in output
    assert "second: 8 adult images fitted on, 4 of 2 patients held out" in output
    notes = population_notes(model)
    assert (notes["sources"], notes["adults_held_out"]) == ('["first", "second"]', "12")


def test_fit_population_without_adult_images(tiny_model_dir: Path, synthetic_dataset: Path,
                                             tmp_path: Path) -> None:
    model = trained_looking_model(tiny_model_dir, synthetic_dataset, tmp_path / "m")
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["fit-population", str(model), "--data",
                                 str(synthetic_dataset), "--adults", str(tmp_path / "empty")])
    assert result.exit_code != 0
    assert "no adult images" in result.output
    assert load_population(model) is None
