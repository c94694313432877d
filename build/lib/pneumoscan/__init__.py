"""pneumoscan: pneumonia detection on chest X-rays. Decision support, not a diagnosis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

DISCLAIMER = ("Decision support only, not a diagnosis: a qualified clinician must read "
              "the radiograph.")

if TYPE_CHECKING:
    from pneumoscan.predictor import Predictor

__all__ = ["DISCLAIMER", "Predictor", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import pneumoscan` stays light (no torch) until the Predictor is asked for.
    if name == "Predictor":
        from pneumoscan.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'pneumoscan' has no attribute {name!r}")
