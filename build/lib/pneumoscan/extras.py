"""Optional dependencies: whether one is installed, and a one-line error naming its extra.

``pip install 'pneumoscan[onnx,serve]'`` (no PyTorch) predicts, evaluates and serves with
ONNX Runtime on a model's ONNX export. ``[torch]`` adds training, ``--backend torch`` and
torchrun; ``[torch,onnx,export]`` writes ONNX exports.
"""

from __future__ import annotations

import importlib.util

from pneumoscan.errors import MissingDependencyError


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as absent
        return False


def require(what: str, modules: tuple[str, ...], extras: str) -> None:
    """Raise :class:`MissingDependencyError` unless every one of ``modules`` is installed.

    Args:
        what: what needs them, for the message ("training", "--backend torch").
        modules: top-level module names, e.g. ``("torch",)``.
        extras: the extras that install them, e.g. ``"torch"``.
    """
    missing = [module for module in modules if not installed(module)]
    if missing:
        raise MissingDependencyError(f"{what} needs {' and '.join(missing)} (not installed): "
                                     f"pip install 'pneumoscan[{extras}]'")
