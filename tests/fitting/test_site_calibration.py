"""Site calibration (``pneumoscan calibrate``'s fitting): the refit, the threshold rule, the
minimum, the weights kept by reference and digest, and the record of the films."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from conftest import site_films
from pneumoscan.calibration import (
    apply_temperature,
    calibrated_logits,
    choose_site_threshold,
    compose_platt,
    sensitivity_lower_bounds,
)
from pneumoscan.errors import DataLayoutError, ModelFileError
from pneumoscan.fitting.site_calibration import (
    MIN_FILMS,
    calibrate_site,
    check_enough,
    fit_site,
    site_version,
)
from pneumoscan.metrics import expected_calibration_error
from pneumoscan.modelcard import ModelCard
from pneumoscan.modelfile import default_model_path, resolve_model
from pneumoscan.preprocessing import PreprocessConfig
from pneumoscan.training_files import ROLES, load_training_files


def test_the_lower_bounds_are_scipys_clopper_pearson() -> None:
    bounds = sensitivity_lower_bounds(30, 0.95)
    for caught in (10, 28, 30):
        expected = binomtest(caught, 30, alternative="greater").proportion_ci(0.95).low
        assert bounds[caught] == pytest.approx(expected, abs=1e-9)
    assert bounds[0] == 0.0
    # none missed: 0.05 ** (1 / n); at 58 positives it is under 0.95, at 59 over
    assert sensitivity_lower_bounds(58, 0.95)[58] < 0.95 < sensitivity_lower_bounds(59, 0.95)[59]


def test_the_threshold_keeps_the_bound_not_the_raw_rate() -> None:
    # 100 positives at 0.01 .. 1.00, 50 negatives at 0.005 .. 0.25
    positives = np.arange(1, 101) / 100
    negatives = np.arange(1, 51) / 200
    labels = np.r_[np.ones(100), np.zeros(50)]
    probabilities = np.r_[positives, negatives]
    chosen = choose_site_threshold(labels, probabilities, sensitivity=0.9, confidence=0.95)
    bounds = sensitivity_lower_bounds(100, 0.95)
    smallest = int(np.flatnonzero(bounds >= 0.9)[0])  # fewest caught whose bound reaches 0.9
    assert smallest == 96  # raw rate 0.96: the bound asks more than a raw 0.90
    assert chosen.caught == smallest and chosen.reached
    assert chosen.lower_bound >= 0.9
    # midway between the last positive it must catch (0.05) and the next lower film (0.045)
    assert chosen.threshold == pytest.approx((0.05 + 0.045) / 2)
    assert (probabilities[labels == 1] >= chosen.threshold).sum() == 96


def test_too_few_positives_catch_them_all_and_say_so() -> None:
    labels = np.r_[np.ones(30), np.zeros(30)]
    probabilities = np.r_[np.linspace(0.3, 1.0, 30), np.linspace(0.0, 0.5, 30)]
    chosen = choose_site_threshold(labels, probabilities, sensitivity=0.95)
    assert not chosen.reached and chosen.caught == 30
    assert chosen.lower_bound == pytest.approx(0.05 ** (1 / 30))
    assert 0.3 > chosen.threshold > probabilities[probabilities < 0.3].max()


def test_compose_platt_is_the_refit_of_the_calibrated_logit() -> None:
    logits = np.linspace(-6, 6, 25)
    calibrated = logits / 0.7 + 2.9
    composed = compose_platt(0.7, 2.9, 1.6, -0.8)
    assert np.allclose(apply_temperature(logits, *composed),
                       apply_temperature(calibrated, 1.6, -0.8))


def test_the_refit_corrects_a_miscalibrated_model_on_unseen_films() -> None:
    """The parent is overconfident and offset at the site: the site's truth is
    sigmoid(0.5 z - 1) of its calibrated logit z. Fitted on 200 films, the refit is near
    the truth and its ECE on 2,000 other films falls."""
    rng = np.random.default_rng(0)
    card = ModelCard(arch="x", preprocessing=PreprocessConfig(), temperature=0.7, bias=2.9,
                     threshold=0.7)

    def films(n: int) -> tuple[np.ndarray, np.ndarray]:
        z = rng.normal(1.0, 3.0, n)
        labels = (rng.random(n) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))).astype(int)
        return 1 / (1 + np.exp(-z)), labels

    fit_p, fit_y = films(200)
    fit = fit_site(fit_p, fit_y, card, sensitivity=0.9)
    refit_temperature = fit.temperature / 0.7  # composed: T' = T * t
    assert refit_temperature == pytest.approx(2.0, rel=0.35)  # slope 0.5
    test_p, test_y = films(2000)
    raw = (calibrated_logits(test_p) - card.bias) * card.temperature
    site = apply_temperature(raw, fit.temperature, fit.bias)
    before = expected_calibration_error(test_y, test_p)
    after = expected_calibration_error(test_y, site)
    assert before > 0.1 and after < before / 2
    assert fit.figures["sensitivity"] >= fit.threshold.lower_bound


def test_too_few_films_are_refused_with_the_counts() -> None:
    with pytest.raises(DataLayoutError, match=rf"40 films count \(15 normal, 25 pneumonia\).*"
                       rf"at least {MIN_FILMS}"):
        check_enough(np.r_[np.zeros(15), np.ones(25)], {"out of scope": 0})
    with pytest.raises(DataLayoutError, match="3 out of scope"):
        check_enough(np.r_[np.zeros(10), np.ones(50)], {"out of scope": 3})
    check_enough(np.r_[np.zeros(20), np.ones(30)], {})  # enough: no error


def test_the_site_version_names_the_site_once() -> None:
    parent = ModelCard(arch="a", preprocessing=PreprocessConfig(), version="net-20261125")
    assert site_version(parent, "north") == "net-20261125+site-north"
    site = ModelCard(arch="a", preprocessing=PreprocessConfig(), version="net-20261125+site-north",
                     site_calibration={"parent": {"version": "net-20261125"}})
    assert site_version(site, "south") == "net-20261125+site-south"


def test_the_site_model_keeps_its_parents_weights_by_reference(site_model: Path) -> None:
    files = resolve_model(site_model)
    card = files.card
    record = card.site_calibration
    assert files.weights == default_model_path() and files.card_path == site_model / "model.json"
    assert not (site_model / "model.safetensors").exists()
    assert sum(p.stat().st_size for p in site_model.iterdir()) < 1_000_000  # no 14 MB copy
    assert record["parent"]["weights"] == "default"
    assert record["parent"]["weights_sha256"] == resolve_model(None).weights_sha256
    assert card.version == f"{resolve_model(None).card.version}+site-testsite"
    shipped = resolve_model(None).card
    assert record["name"] == "testsite" and record["parent"]["version"] == shipped.version
    # only the films whose result applies count (one pneumonia film is called adult)
    assert record["n_normal"] + record["n_pneumonia"] + sum(record["excluded"].values()) == 70
    assert record["n_normal"] == 25 and record["n_pneumonia"] >= 40
    assert record["prevalence"] == pytest.approx(
        record["n_pneumonia"] / (record["n_normal"] + record["n_pneumonia"]))
    low, high = record["figures"]["sensitivity_ci95"]
    assert low <= record["figures"]["sensitivity"] <= high
    assert card.threshold != shipped.threshold
    assert (card.temperature, card.bias) != (shipped.temperature, shipped.bias)


def test_the_films_are_recorded_beside_the_parents(site_model: Path) -> None:
    files = load_training_files(site_model)
    parent = load_training_files(None)
    assert files is not None and parent is not None
    counted = resolve_model(site_model).card.site_calibration
    assert [files.count(r) for r in ROLES] == [parent.count(r) for r in ROLES[:-1]] + [
        counted["n_normal"] + counted["n_pneumonia"]]


def test_replaced_parent_weights_are_refused(site_model: Path, tmp_path: Path,
                                             chest_xray_dir: Path) -> None:
    """A site model of a copied parent: it runs while the parent is unchanged, and is
    refused once the parent's weights are replaced."""
    parent = tmp_path / "parent"
    parent.mkdir()
    shipped = default_model_path()
    for suffix in (".safetensors", ".json"):
        shutil.copy(shipped.with_suffix(suffix), parent / f"model{suffix}")
    site = tmp_path / "site"
    site.mkdir()
    card = json.loads((site_model / "model.json").read_text())
    card["site_calibration"]["parent"]["weights"] = "../parent/model.safetensors"
    (site / "model.json").write_text(json.dumps(card))
    assert resolve_model(site).weights == (parent / "model.safetensors").resolve()
    data = bytearray((parent / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (parent / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="have changed since this site calibration"):
        resolve_model(site)
    (parent / "model.safetensors").unlink()
    with pytest.raises(ModelFileError, match="are missing"):
        resolve_model(site)


def test_calibrate_refuses_a_small_folder_and_writes_nothing(chest_xray_dir: Path,
                                                             tmp_path: Path) -> None:
    films = site_films(chest_xray_dir, tmp_path / "films", 15, 25)
    with pytest.raises(DataLayoutError, match="a site calibration needs at least 50") as error:
        calibrate_site(None, films, tmp_path / "model", name="small")
    # every film is accounted for: counted, or left out with the reason (here: a child's
    # film the model's population check takes for an adult's)
    counted = re.search(r"(\d+) films count \((\d+) normal, (\d+) pneumonia\)(?: \((\d+) "
                        r"more were left out: \d+ other population\))?", str(error.value))
    assert counted is not None, str(error.value)
    total, normal, pneumonia, left_out = (int(g or 0) for g in counted.groups())
    assert total == normal + pneumonia and total + left_out == 40 and normal <= 15
    assert not (tmp_path / "model").exists()
    with pytest.raises(ValueError, match="site name"):
        calibrate_site(None, films, tmp_path / "model", name="a b/c")
