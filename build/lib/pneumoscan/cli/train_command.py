"""``pneumoscan train``: fine-tune a CNN on a folder of labelled chest X-rays."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pneumoscan.cli.console import configure_logging, console, progress_bar, user_errors
from pneumoscan.extras import require

if TYPE_CHECKING:  # imported lazily at run time: `pneumoscan --help` stays fast
    from pneumoscan.fitting.config import TrainConfig


def train_command(
    data: Path = typer.Option(..., "--data", metavar="DIR",
                              help="ROOT/{train,val,test}/{NORMAL,PNEUMONIA} or "
                              "ROOT/{NORMAL,PNEUMONIA}; trains on train/ (or ROOT)."),
    out: Path = typer.Option(..., "--out", metavar="DIR",
                             help="Output folder for the model and its logs."),
    config: Path | None = typer.Option(None, "--config", metavar="FILE",
                                       help="TOML file of TrainConfig settings (see "
                                       "configs/default.toml)."),
    epochs: int | None = typer.Option(None, "--epochs", metavar="N", min=1,
                                      help="Maximum epochs."),
    arch: str | None = typer.Option(None, "--arch", metavar="NAME",
                                    help="efficientnet_lite0, simple_cnn, resnet18, "
                                    "mobilenetv3_large_100, or another timm name."),
    image_size: int | None = typer.Option(None, "--image-size", metavar="PX", min=32,
                                          help="Input side."),
    seed: int | None = typer.Option(None, "--seed", metavar="N",
                                    help="Seed of split, order and augment."),
    pretrained: bool | None = typer.Option(None, "--pretrained/--no-pretrained",
                                           help="Start from offline ImageNet weights."),
    adults: Path | None = typer.Option(None, "--adults", metavar="DIR",
                                       help="Adult frontal films (e.g. "
                                       "../shared/data/adult_nih): fit the population check "
                                       "on them after training."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", metavar="DIR",
                                          help="Decoded-image cache (default "
                                          "~/.cache/pneumoscan)."),
    device: str = typer.Option("auto", "--device", metavar="NAME",
                               help="auto (CUDA when present), cpu or cuda; mixed precision "
                               "on CUDA."),
    devices: int = typer.Option(1, "--devices", metavar="N", min=1,
                                help="Processes to start on this machine, trained as one "
                                "with DistributedDataParallel (one per GPU; on the CPU they "
                                "share the cores). Under torchrun leave it out: "
                                "--nproc-per-node sets the count there."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details."),
) -> None:
    """Train a pneumonia classifier.

    Writes model.safetensors + model.json to --out, with the scope statistics, the
    population check (with --adults) and the digests of the files it was trained and
    validated on beside them.
    """
    configure_logging(verbose)
    with user_errors():
        require("training", ("torch",), "torch")
    from pneumoscan.fitting import distributed
    from pneumoscan.fitting.config import load_config

    with user_errors():
        settings = load_config(config).with_overrides(
            epochs=epochs, arch=arch, image_size=image_size, seed=seed, pretrained=pretrained,
            adults=None if adults is None else str(adults))
        if resume and (out / "config.toml").is_file() and config is None:
            settings = load_config(out / "config.toml").with_overrides(epochs=epochs)
        if devices > 1:
            if distributed.launched_by_torchrun():
                raise ValueError("--devices starts its own processes; under torchrun leave it "
                                 "out (--nproc-per-node sets the count)")
            try:
                distributed.launch_local(devices, _train_spawned, settings, data, out, resume,
                                         cache_dir, device, verbose)
            except distributed.ProcessFailedError as exc:
                raise typer.Exit(code=exc.exit_code) from exc  # the process said why
        else:
            train_process(settings, data, out, resume, cache_dir, device, verbose)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun's other ranks stay quiet
        console.print(f"[green]done:[/] model written to {out}")


def _train_spawned(*args: Any) -> None:
    """:func:`train_process` in a process started by ``--devices``: an exit code, no trace."""
    try:
        train_process(*args)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)


def train_process(settings: TrainConfig, data: Path, out: Path, resume: bool,
                  cache_dir: Path | None, device: str, verbose: bool) -> None:
    """Train as the only process, or as one of torchrun's; rank 0 logs and shows progress."""
    from pneumoscan.fitting import distributed
    from pneumoscan.fitting.training import train

    configure_logging(verbose)  # again: a process started by --devices begins bare
    with user_errors(), distributed.process_group(device) as chosen:
        if not distributed.is_main_process():
            logging.getLogger().setLevel(logging.WARNING)  # one log: rank 0's
            train(settings, data, out, resume=resume, cache_dir=cache_dir, device=chosen)
            return
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

            train(settings, data, out, resume=resume, cache_dir=cache_dir, progress=progress,
                  device=chosen)
