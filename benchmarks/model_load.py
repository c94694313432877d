"""Loading a model (issue 24): what ``Predictor.load`` reads, hashes and costs.

Usage:
    python benchmarks/model_load.py [--model PATH] [--backend onnx|torch] [--repeat N]
        [--markdown]

For the model (default: the shipped one, with its ONNX export, scope statistics and
population classifier beside it), loads the Predictor ``--repeat`` times in this process
and reports, per load: how many times the weights file was opened by Python (the SHA-256
reads; safetensors opens it natively and is not counted), how many times the card was
read, and the median wall time. The counting wraps ``Path.open`` and ``Path.read_text``, so
the same script measures a tree from before the model was resolved once.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from pneumoscan.predictor import Predictor


def measure(model: Path | None, backend: str, repeat: int) -> dict[str, Any]:
    """Opens of the weights, reads of the card (both per load) and load times."""
    from pneumoscan.modelfile import default_model_path

    weights = Path(model) if model is not None else default_model_path()
    if weights.is_dir():
        weights = weights / "model.safetensors"
    opened: list[str] = []
    read: list[str] = []
    open_file, read_text = Path.open, Path.read_text

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self.name)
        return open_file(self, *args, **kwargs)

    def counting_read(self: Path, *args: Any, **kwargs: Any) -> str:
        read.append(self.name)
        return read_text(self, *args, **kwargs)

    Predictor.load(model, backend=backend)  # imports and the first session out of the way
    seconds = []
    Path.open, Path.read_text = counting_open, counting_read  # type: ignore[method-assign]
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            predictor = Predictor.load(model, backend=backend)
            seconds.append(time.perf_counter() - start)
    finally:
        Path.open, Path.read_text = open_file, read_text  # type: ignore[method-assign]
    return {"backend": predictor.backend.name,
            "weights_hashed": opened.count(weights.name) / repeat,
            "card_reads": sum(name.endswith(".json") for name in read) / repeat,
            "scope": predictor.scope is not None,
            "population": predictor.population is not None,
            "median_ms": 1000 * statistics.median(seconds),
            "weights_mb": weights.stat().st_size / 1e6}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    row = measure(args.model, args.backend, args.repeat)
    header = ("backend", "weights (MB)", "SHA-256 reads / load", "card reads / load",
              "scope, population", "median load (ms)")
    cells = (row["backend"], f"{row['weights_mb']:.1f}", f"{row['weights_hashed']:g}",
             f"{row['card_reads']:g}", f"{row['scope']}, {row['population']}",
             f"{row['median_ms']:.0f}")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        print("| " + " | ".join(cells) + " |")
    else:
        for name, value in zip(header, cells, strict=True):
            print(f"{name:>22}: {value}")


if __name__ == "__main__":
    main()
