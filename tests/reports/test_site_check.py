"""The site check against the shipped model's validation films: adult films are told apart,
pediatric films of the same hospital are not; its verdict, report and command."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pneumoscan.cli.main import app
from pneumoscan.dataset import training_split
from pneumoscan.errors import ModelFileError
from pneumoscan.inputs import find_images
from pneumoscan.predictor import Predictor
from pneumoscan.reference import load_reference
from pneumoscan.reports.site_check import (
    CLEAR_SHIFT_AUC,
    SOME_SHIFT_AUC,
    SiteCheck,
    check_site,
    summarize_reference,
)
from pneumoscan.reports.site_check_report import render_site_check

runner = CliRunner()


@pytest.fixture(scope="module")
def predictor(shipped_model: Path) -> Predictor:
    return Predictor.load(shipped_model, backend="onnx")


@pytest.fixture(scope="module")
def adult_check(predictor: Predictor, adult_dir: Path) -> SiteCheck:
    return check_site(predictor, None, find_images(adult_dir)[::8])  # 39 adult films


def test_the_shipped_reference_is_its_validation_set(predictor: Predictor,
                                                     chest_xray_dir: Path) -> None:
    reference = load_reference(None)
    assert reference is not None, "default.reference.safetensors missing or stale"
    validation = training_split(predictor.card, chest_xray_dir).validation
    assert len(reference.labels) == len(validation)
    assert reference.labels.tolist() == [s.label for s in validation]
    summary = summarize_reference(predictor, reference)
    # nearly all in scope and pediatric, and the card's validation positives among them
    assert summary.out_of_scope / summary.n < 0.02 and summary.adult / summary.n < 0.02
    assert abs(summary.positive - (predictor.card.validation["tp"]
                                   + predictor.card.validation["fp"])) <= 10


def test_adult_films_are_told_apart(adult_check: SiteCheck) -> None:
    assert adult_check.site.n == 39
    assert adult_check.domain_auc_ci95[0] >= CLEAR_SHIFT_AUC
    assert adult_check.calibrate and not adult_check.holds
    assert adult_check.site.adult / adult_check.site.in_scope > 0.9
    assert adult_check.verdict[0].startswith("These films differ clearly")
    assert any("look like adults'" in sentence for sentence in adult_check.verdict)


def test_pediatric_films_of_the_same_hospital_are_not(predictor: Predictor,
                                                      chest_xray_dir: Path) -> None:
    train = training_split(predictor.card, chest_xray_dir).train
    chosen = np.random.default_rng(1).choice(len(train), 60, replace=False)
    check = check_site(predictor, None, [train[i].path for i in chosen])
    assert check.domain_auc_ci95[0] < SOME_SHIFT_AUC
    assert check.holds and not check.calibrate
    assert check.site.adult == 0 and check.site.out_of_scope <= 1
    assert check.verdict[0].startswith("These films are not clearly different")


def test_the_report_leads_with_the_verdict(adult_check: SiteCheck) -> None:
    page = render_site_check(adult_check, source="ward films")
    assert page.index("These films differ clearly") < page.index("<h2>Figures</h2>")
    assert re.search(r'<img alt="Histograms[^"]*"\s+src="data:image/png;base64,', page)
    assert f"{adult_check.domain_auc:.3f}" in page
    assert "ward films" in page and 'class="verdict shifted"' in page


def test_site_check_command(adult_dir: Path, tmp_path: Path) -> None:
    films = tmp_path / "films"
    films.mkdir()
    for path in find_images(adult_dir)[:25]:
        shutil.copy(path, films / path.name)
    (films / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = runner.invoke(app, ["site-check", str(films), "--out",
                                 str(tmp_path / "check.html")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "25 films compared (1 unreadable)" in result.output
    assert "run `pneumoscan calibrate` before go-live: yes" in result.output
    assert (tmp_path / "check.html").read_text().startswith("<!doctype html>")
    for path in list(films.iterdir())[:10]:
        path.unlink()
    few = runner.invoke(app, ["site-check", str(films)])
    assert few.exit_code == 2 and "at least 20" in few.output


def test_a_model_without_a_reference_says_how_to_make_one(tiny_model_dir: Path,
                                                          adult_dir: Path) -> None:
    tiny = Predictor.load(tiny_model_dir)
    with pytest.raises(ModelFileError, match=r"pneumoscan fit-scope .* --data DATA"):
        check_site(tiny, tiny_model_dir, find_images(adult_dir)[:20])
