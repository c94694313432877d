"""The package's layers: ``fitting/`` and ``reports/`` sit above a runtime core.

- The core (the top-level modules) imports nothing from ``fitting/``, ``reports/`` or the
  faces (``cli/``, ``server/``, ``dicom_node/``).
- ``reports/`` imports nothing from ``fitting/`` at module level (the torchrun shard merge
  asks for its process group only when it runs).
- The runtime faces, ``server/`` and ``dicom_node/``, import nothing from ``fitting/``; in
  ``cli/`` only the commands that fit or export a model do, and ``predict`` only under
  torchrun.
- Run for real: ``predict`` on a file, the web app and the DICOM node leave no
  ``pneumoscan.fitting`` module loaded.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pneumoscan"
FACES = ("cli", "server", "dicom_node")
#: CLI commands that fit, export or shard a model: the only faces allowed into fitting/.
FITTING_COMMANDS = {"train_command", "export_command", "fit_scope_command",
                    "fit_population_command", "predict_command",
                    "calibrate_command"}  # calibrate fits a site model


def _imports(path: Path, *, module_level_only: bool = False) -> set[str]:
    """The ``pneumoscan`` modules that ``path`` imports (all of them, or module level only)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("pneumoscan.")}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in (*FACES, "fitting", "reports") else "core"


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.py"))


def test_the_core_imports_no_layer_above_it() -> None:
    for path in _modules(PACKAGE):
        if path.name == "__main__.py":  # ``python -m pneumoscan`` starts the CLI
            continue
        above = {m for m in _imports(path) if _layer(m) != "core"}
        assert not above, f"{path.name} (core) imports {sorted(above)}"


def test_reports_do_not_import_fitting_at_module_level() -> None:
    for path in _modules(PACKAGE / "reports"):
        fitting = {m for m in _imports(path, module_level_only=True) if _layer(m) == "fitting"}
        assert not fitting, f"reports/{path.name} imports {sorted(fitting)}"


def test_the_runtime_faces_import_nothing_from_fitting() -> None:
    for face in FACES:
        for path in _modules(PACKAGE / face):
            if face == "cli" and path.stem in FITTING_COMMANDS:
                continue
            fitting = {m for m in _imports(path) if _layer(m) == "fitting"}
            assert not fitting, f"{face}/{path.name} imports {sorted(fitting)}"


def test_the_layer_check_sees_a_violation() -> None:
    assert _layer("pneumoscan.fitting.training") == "fitting"
    assert _layer("pneumoscan.reports.worklist") == "reports"
    assert _layer("pneumoscan.predictor") == "core"
    assert "pneumoscan.fitting.training.train" in _imports(
        PACKAGE / "cli" / "train_command.py")


_RUNTIME = """
import sys
from pathlib import Path

from typer.testing import CliRunner

from pneumoscan.cli.main import app

result = CliRunner().invoke(app, ["predict", sys.argv[1]])
assert result.exit_code == 0, result.output
from pneumoscan.server.app import create_app
from pneumoscan.server.settings import ServerSettings

with __import__("fastapi.testclient").testclient.TestClient(create_app(ServerSettings())) as client:
    assert client.get("/api/v1/health").status_code == 200
import pneumoscan.cli.dicom_node_command
import pneumoscan.dicom_node.node
print("\\n".join(sorted(m for m in sys.modules if m.startswith("pneumoscan."))))
"""


@pytest.mark.slow
def test_predict_serve_and_the_node_load_nothing_from_fitting(
        shared_normal_images: list[Path]) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PNEUMOSCAN_")}
    run = subprocess.run([sys.executable, "-c", _RUNTIME, str(shared_normal_images[0])],
                         capture_output=True, text=True, timeout=300, env=environment)
    assert run.returncode == 0, run.stderr
    loaded = set(run.stdout.split())
    assert "pneumoscan.predictor" in loaded and "pneumoscan.server.app" in loaded
    assert "pneumoscan.dicom_node.node" in loaded
    assert not {m for m in loaded if m.startswith("pneumoscan.fitting")}, sorted(loaded)
