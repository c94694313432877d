"""``pneumoscan export``: write a model's ONNX file, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from pneumoscan.cli.console import configure_logging, console, stdout, user_errors
from pneumoscan.extras import require


def export_command(
    export_format: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    model: Path | None = typer.Option(None, "--model", help="Model folder or .safetensors "
                                      "file (default: the shipped model)."),
    out: Path | None = typer.Option(None, "--out", help="File to write (default: beside the "
                                    "weights, model.onnx or NAME.onnx, where the onnx backend "
                                    "looks for it)."),
    opset: int | None = typer.Option(None, "--opset", min=7, help="ONNX opset version "
                                     "(default 17)."),
    check_data: Path | None = typer.Option(None, "--check-data", help="Folder of real "
                                           "X-rays to compare ONNX with PyTorch on "
                                           "(default: random inputs only)."),
    check_images: int = typer.Option(64, "--check-images", min=1, help="How many images of "
                                     "--check-data to compare on."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Export a model to ONNX, checked.

    Exports to ONNX (dynamic batch; logits and feature map), runs onnx.checker,
    and refuses to write it unless it matches PyTorch (max |logit diff| <= 1e-4, same
    labels)."""
    configure_logging(verbose)
    with user_errors():
        if export_format != "onnx":
            raise ValueError(f"unknown --format {export_format!r}; only 'onnx' is supported")
        require("export", ("torch", "onnx", "onnxruntime"), "torch,onnx,export")
        from pneumoscan.fitting.export import DEFAULT_OPSET, export_onnx, sample_images

        images = sample_images(check_data, check_images) if check_data is not None else []
        path, report = export_onnx(model, out, opset=opset or DEFAULT_OPSET,
                                   check_images=images)
    if not images:
        console.print("[yellow]note:[/] checked on random inputs only; pass --check-data "
                      "with a folder of X-rays to check on real images")
    stdout.print(f"{path}  ({path.stat().st_size / 1e6:.1f} MB)")
    stdout.print(f"parity: {report.describe()}")
