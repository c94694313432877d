"""``pneumoscan train``: fine-tune a CNN on a folder of labelled chest X-rays."""

from __future__ import annotations

from pathlib import Path

import typer

from pneumoscan.cli.console import configure_logging, console, progress_bar, user_errors


def train_command(
    data: Path = typer.Option(..., "--data", help="ROOT/{train,val,test}/{NORMAL,PNEUMONIA} "
                              "or ROOT/{NORMAL,PNEUMONIA}; trains on train/ (or ROOT)."),
    out: Path = typer.Option(..., "--out", help="Output folder for the model and its logs."),
    config: Path | None = typer.Option(None, "--config", help="TOML file of TrainConfig "
                                       "settings (see configs/default.toml)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Maximum epochs."),
    arch: str | None = typer.Option(None, "--arch", help="efficientnet_lite0, simple_cnn, "
                                    "resnet18, mobilenetv3_large_100, or another timm name."),
    image_size: int | None = typer.Option(None, "--image-size", min=32, help="Input side."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of split, order and augment."),
    pretrained: bool | None = typer.Option(None, "--pretrained/--no-pretrained",
                                           help="Start from offline ImageNet weights."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Decoded-image cache "
                                          "(default ~/.cache/pneumoscan)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a pneumonia classifier; writes model.safetensors + model.json to --out."""
    configure_logging(verbose)
    from pneumoscan.config import load_config
    from pneumoscan.training import train

    with user_errors():
        settings = load_config(config).with_overrides(
            epochs=epochs, arch=arch, image_size=image_size, seed=seed, pretrained=pretrained)
        if resume and (out / "config.toml").is_file() and config is None:
            settings = load_config(out / "config.toml").with_overrides(epochs=epochs)
        with progress_bar() as bar:
            task = bar.add_task("loading", total=None)
            state = {"phase": 0}

            def progress(kind: str, amount: int) -> None:
                if kind == "start":
                    state["phase"] += 1
                    label = "decoding images" if state["phase"] <= 2 else "training"
                    bar.reset(task, total=amount, description=label)
                else:
                    bar.advance(task, amount)

            train(settings, data, out, resume=resume, cache_dir=cache_dir, progress=progress)
    console.print(f"[green]done:[/] model written to {out}")
