"""Shared fixtures: the shared data folder (skipped when absent), the shipped model (loaded
once), tiny synthetic data sets and a tiny random model, so most tests run in milliseconds
without the real model."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from pneumoscan.predictor import Predictor

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a stray pretrained=True fails fast

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHEST_XRAY = SHARED_DATA / "chest_xray"
DICOM_DIR = SHARED_DATA / "dicom"
ADULT_DIR = SHARED_DATA / "adult_nih"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path}: place the shared/ folder beside the "
                    "project (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def chest_xray_dir() -> Path:
    """``../shared/data/chest_xray`` (its ``train/`` split), or skip."""
    return _require(CHEST_XRAY / "train").parent


@pytest.fixture(scope="session")
def dicom_dir() -> Path:
    """``../shared/data/dicom``, or skip."""
    return _require(DICOM_DIR)


@pytest.fixture(scope="session")
def adult_dir() -> Path:
    """``../shared/data/adult_nih`` (adult films for the population check), or skip."""
    return _require(ADULT_DIR)


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The shipped model's weights (``pneumoscan/weights/default.safetensors``; its card,
    ONNX export and scope statistics beside them). They are part of the package, so a
    missing part fails the test instead of skipping it."""
    from pneumoscan.modelfile import default_model_path

    weights = default_model_path()
    missing = [p.name for p in (weights, weights.with_suffix(".json")) if not p.is_file()]
    if missing:
        pytest.fail(f"the shipped model is incomplete: {', '.join(missing)} missing from "
                    f"{weights.parent}")
    return weights


@pytest.fixture(scope="session")
def shipped_predictor(shipped_model: Path) -> Predictor:
    """The shipped model on the torch backend, loaded once for the session."""
    from pneumoscan.predictor import Predictor

    return Predictor.load(shipped_model, backend="torch")


@pytest.fixture(scope="session")
def shared_normal_images(chest_xray_dir: Path) -> list[Path]:
    return sorted((chest_xray_dir / "train" / "NORMAL").glob("*.jpeg"))[:4]


@pytest.fixture(scope="session")
def shared_pneumonia_images(chest_xray_dir: Path) -> list[Path]:
    return sorted((chest_xray_dir / "train" / "PNEUMONIA").glob("*.jpeg"))[:4]


def synthetic_xray(rng: np.random.Generator, pneumonia: bool, size: int = 48) -> np.ndarray:
    """A toy 'radiograph': two dark lungs; pneumonia adds a bright blob in one lung."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 200 - 120 * (np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.02)
                         + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.02))
    if pneumonia:
        cx, cy = rng.uniform(0.25, 0.35), rng.uniform(0.4, 0.6)
        image += 90 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.005)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_synthetic_dataset(root: Path, n_patients: int = 12, images_per_patient: int = 2,
                           seed: int = 0, splits: tuple[str, ...] = ("train",)) -> Path:
    """Write a Kermany-style folder of synthetic JPEGs with parseable patient names."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for p in range(n_patients):
            for m in range(images_per_patient):
                normal_dir = root / split / "NORMAL"
                pneu_dir = root / split / "PNEUMONIA"
                normal_dir.mkdir(parents=True, exist_ok=True)
                pneu_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(synthetic_xray(rng, False)).save(
                    normal_dir / f"IM-{p:04d}-{m + 1:04d}.jpeg")
                cause = "bacteria" if p % 3 else "virus"
                Image.fromarray(synthetic_xray(rng, True)).save(
                    pneu_dir / f"person{p + 1}_{cause}_{p * 10 + m}.jpeg")
    return root


def make_adult_folder(root: Path, n_patients: int = 9, with_labels: bool = True) -> Path:
    """NIH-style adult films: ``{NORMAL,PNEUMONIA}/PPPPPPPP_00M.jpeg`` (two per patient),
    bright and flat where the synthetic children have dark lungs, and a labels.csv."""
    rng = np.random.default_rng(1)
    rows = []
    for patient in range(n_patients):
        label = "NORMAL" if patient % 3 == 0 else "PNEUMONIA"
        (root / label).mkdir(parents=True, exist_ok=True)
        for image in range(2):
            name = f"{label}/{patient:08d}_{image:03d}.jpeg"
            pixels = np.clip(rng.normal(200, 20, (80, 80)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name)
            rows.append({"file": name, "patient_id": f"P{patient}"})
    if with_labels:
        with (root / "labels.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["file", "patient_id"])
            writer.writeheader()
            writer.writerows(rows)
    return root


def trained_looking_model(tiny_model_dir: Path, data: Path, target: Path,
                          **config: object) -> Path:
    """A copy of the tiny model whose card says it was trained on ``data`` with ``config``."""
    import shutil

    from pneumoscan.dataset import discover, fingerprint

    shutil.copytree(tiny_model_dir, target)
    card = json.loads((target / "model.json").read_text())
    card["training"] = {"config": {"val_fraction": 0.25, "seed": 3, **config}}
    card["data_fingerprint"] = fingerprint(discover(data).splits["train"])
    (target / "model.json").write_text(json.dumps(card))
    return target


@pytest.fixture
def synthetic_dataset(tmp_path: Path) -> Path:
    """``ROOT/train/{NORMAL,PNEUMONIA}`` with 12 patients x 2 images per class."""
    return make_synthetic_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight simple_cnn model folder (model.safetensors + model.json), 64 px."""
    import torch

    from pneumoscan.modelcard import ModelCard
    from pneumoscan.modelfile import save_model
    from pneumoscan.models import create_model
    from pneumoscan.preprocessing import PreprocessConfig

    torch.manual_seed(0)
    model = create_model("simple_cnn").eval()
    card = ModelCard(arch="simple_cnn", preprocessing=PreprocessConfig(image_size=64),
                     threshold=0.5, version="tiny-test-model")
    return save_model(model, card, tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def exported_tiny_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model with its ONNX export beside it (``model.onnx``).

    The session's ``tiny_model_dir`` stays without one, so other tests' ``auto`` backend
    is unchanged.
    """
    import shutil

    pytest.importorskip("onnx")
    from pneumoscan.fitting.export import export_onnx

    folder = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(tiny_model_dir, folder)
    export_onnx(folder)
    return folder


def site_films(chest_xray_dir: Path, target: Path, n_normal: int, n_pneumonia: int) -> Path:
    """A site's labelled films: out-of-protocol films of the shipped model re-encoded as PNG
    (the same pictures in other bytes, so the parent's record of its files does not know
    them, as it would not know a hospital's), in ``target/{NORMAL,PNEUMONIA}``."""
    from pneumoscan.dataset import training_split
    from pneumoscan.modelfile import resolve_model

    block = training_split(resolve_model(None).card, chest_xray_dir).protocol
    for label, name, count in ((0, "NORMAL", n_normal), (1, "PNEUMONIA", n_pneumonia)):
        folder = target / name
        folder.mkdir(parents=True, exist_ok=True)
        for sample in [s for s in block if s.label == label][:count]:
            Image.open(sample.path).convert("L").save(folder / f"{sample.path.stem}.png")
    return target


@pytest.fixture(scope="session")
def site_model(chest_xray_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site model of the shipped one (``pneumoscan calibrate``'s function) fitted on 70
    site films (25 normal, 45 pneumonia) under the name ``testsite``."""
    from pneumoscan.fitting.site_calibration import calibrate_site

    root = tmp_path_factory.mktemp("site")
    films = site_films(chest_xray_dir, root / "films", 25, 45)
    calibrate_site(None, films, root / "model", name="testsite")
    return root / "model"
