"""The training loop: fine-tune a CNN with class-weighted loss, checkpoints and resume.

Every epoch is a pure function of ``(config.seed, epoch)``: its shuffling, augmentation
and dropout draw from generators seeded with both, and the learning rate is a function of
the step. So a run killed after epoch k and resumed from its checkpoint ends with the
same weights as an uninterrupted run (on the CPU, where kernels are deterministic).

Under torchrun (see ``pneumoscan.fitting.distributed``) the model is wrapped in
DistributedDataParallel: each of N processes takes every N-th image of each batch, so
``batch_size`` stays the global batch and the learning-rate schedule does not change. Every
rank loads the checkpoint on resume; only rank 0 writes files and logs epochs.

Checkpoints (:mod:`pneumoscan.fitting.checkpoint`) are safetensors plus JSON: no pickle anywhere.
"""

from __future__ import annotations

import csv
import logging
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score

from pneumoscan import __version__
from pneumoscan.calibration import (
    apply_temperature,
    fit_operating_point,
    fit_temperature,
    fit_worst_case_operating_point,
)
from pneumoscan.dataset import (
    Sample,
    TrainingSplit,
    describe,
    discover,
    fingerprint,
    split_for_training,
    split_seed,
)
from pneumoscan.errors import DataLayoutError
from pneumoscan.fitted_state import POPULATION
from pneumoscan.fitting import distributed
from pneumoscan.fitting.augmentation import augment_batch, reencoded
from pneumoscan.fitting.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from pneumoscan.fitting.config import TrainConfig, dump_config
from pneumoscan.fitting.logits import predict_evidence, predict_logits
from pneumoscan.fitting.population_fitting import describe_population, fit_population_on_folders
from pneumoscan.fitting.reference_fitting import fit_reference
from pneumoscan.fitting.scope_fitting import describe_scope, fit_scope
from pneumoscan.fitting.shifts import SHIFTS, SOURCE_SIZE, shifted_sets
from pneumoscan.heatmap import heatmap_scale
from pneumoscan.image_cache import load_resized
from pneumoscan.metrics import compute_metrics
from pneumoscan.modelcard import CLASS_NAMES, ModelCard
from pneumoscan.modelfile import save_model
from pneumoscan.models import PneumoniaNet, count_parameters, create_model
from pneumoscan.preprocessing import PreprocessConfig, normalize, resize_all
from pneumoscan.training_files import record_split, save_training_files

logger = logging.getLogger(__name__)

#: What config.threshold_rule accepts (see TrainConfig).
THRESHOLD_RULES = ("plateau", "worst-case")
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_auc", "val_cause_auc", "lr",
                   "seconds")

#: Called with (kind, amount): kind "start" (total steps) or "advance" (steps done).
ProgressCallback = Callable[[str, int], None]


@dataclass
class Arrays:
    """Resized uint8 images and their targets for one side of the split."""

    pixels: np.ndarray  # (N, S, S) uint8
    labels: np.ndarray  # (N,) 0 normal / 1 pneumonia
    causes: np.ndarray  # (N,) 1 bacterial / 0 viral / -1 unknown or normal
    samples: list[Sample]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (the one seeding function)."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 10_007 + epoch


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up then cosine decay to zero, as a pure function of the step."""
    total = config.epochs * steps_per_epoch
    warmup = max(1, int(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _to_arrays(samples: list[Sample], preprocess: PreprocessConfig, cache_dir: Path | None,
               progress: ProgressCallback | None) -> Arrays:
    if progress:
        progress("start", len(samples))
    pixels, bad = load_resized(samples, preprocess.image_size, preprocess.source_size,
                               cache_dir=cache_dir,
                               progress=(lambda n: progress("advance", n)) if progress else None)
    kept = [s for i, s in enumerate(samples) if i not in set(bad)]
    if bad:
        logger.warning("%d unreadable image(s) left out", len(bad))
    labels = np.array([s.label for s in kept], dtype=np.int64)
    causes = np.array([-1 if s.cause is None else s.cause for s in kept], dtype=np.int64)
    return Arrays(pixels, labels, causes, kept)


def loss_terms(logits: torch.Tensor, labels: torch.Tensor, causes: torch.Tensor,
               config: TrainConfig, pos_weight: torch.Tensor, cause_pos_weight: torch.Tensor,
               copies: torch.Tensor | None = None) -> torch.Tensor:
    """Class-weighted BCE on pneumonia + masked, weighted BCE on the cause of pneumonia;
    with the logits of the images' re-encoded ``copies``, + ``config.consistency`` times the
    mean squared difference of the pneumonia logits of each image and its copy."""
    eps = config.label_smoothing
    target = labels.float() * (1 - eps) + eps / 2
    loss = F.binary_cross_entropy_with_logits(logits[:, 0], target, pos_weight=pos_weight)
    known = causes >= 0
    if known.any() and config.cause_loss_weight > 0:
        cause_target = causes[known].float() * (1 - eps) + eps / 2
        loss = loss + config.cause_loss_weight * F.binary_cross_entropy_with_logits(
            logits[known, 1], cause_target, pos_weight=cause_pos_weight)
    if copies is not None and config.consistency > 0:
        loss = loss + config.consistency * (logits[:, 0] - copies[:, 0]).pow(2).mean()
    return loss


def _pos_weight(targets: np.ndarray) -> torch.Tensor:
    positives = int((targets == 1).sum())
    negatives = int((targets == 0).sum())
    return torch.tensor(negatives / max(1, positives), dtype=torch.float32)


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return ""


def _validate(model: PneumoniaNet, val: Arrays, preprocess: PreprocessConfig,
              config: TrainConfig, pos_weight: torch.Tensor,
              cause_pos_weight: torch.Tensor, device: torch.device,
              ) -> tuple[dict[str, float], np.ndarray]:
    # Each process scores every N-th image; all of them then hold all logits and scores.
    share = val.pixels[distributed.rank()::distributed.world_size()]
    logits = distributed.gather_strided(predict_logits(model, share, preprocess, device=device),
                                        len(val.pixels))
    with torch.no_grad():
        loss = loss_terms(torch.from_numpy(logits), torch.from_numpy(val.labels),
                          torch.from_numpy(val.causes), config, pos_weight, cause_pos_weight)
    auc = float(roc_auc_score(val.labels, logits[:, 0]))
    known = val.causes >= 0
    cause_auc = float(roc_auc_score(val.causes[known], logits[known, 1])) \
        if known.any() and len(set(val.causes[known])) == 2 else math.nan
    return {"val_loss": float(loss), "val_auc": auc, "val_cause_auc": cause_auc}, logits


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.AdamW, train: Arrays,
                 preprocess: PreprocessConfig, config: TrainConfig, epoch: int,
                 pos_weight: torch.Tensor, cause_pos_weight: torch.Tensor,
                 progress: ProgressCallback | None,
                 device: torch.device = torch.device("cpu")) -> float:
    """One epoch; ``model`` may be DDP-wrapped. Returns the mean loss over all processes."""
    rank, world = distributed.rank(), distributed.world_size()
    seed = _epoch_seed(config.seed, epoch)
    torch.manual_seed(seed * world + rank)  # dropout; one process: seed itself
    generator = torch.Generator().manual_seed(seed * world + rank)  # augmentation
    order = np.random.default_rng(seed).permutation(len(train.labels))  # same on every rank
    pos_weight, cause_pos_weight = pos_weight.to(device), cause_pos_weight.to(device)
    steps = len(order) // config.batch_size  # drop the last partial batch (BatchNorm)
    model.train()
    total = 0.0
    for step in range(steps):
        lr = learning_rate(config, epoch * steps + step, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = order[step * config.batch_size:(step + 1) * config.batch_size][rank::world]
        images = torch.from_numpy(train.pixels[index]).float().div_(255).unsqueeze(1)
        images = augment_batch(images, config.augment, generator)  # (B, 1, S, S) in [0, 1]
        if config.consistency > 0:  # each image followed by its re-encoded copy
            images = torch.cat([images, reencoded(images, generator)])
        # Back to uint8 so the augmented batch goes through the one preprocessing function.
        augmented = images[:, 0].mul(255).round_().to(torch.uint8).numpy()
        inputs = torch.from_numpy(normalize(augmented, preprocess)).to(device)  # (B, 1, S, S)
        with distributed.autocast(device):
            logits = model(inputs)
            loss = loss_terms(logits[:len(index)],
                              torch.from_numpy(train.labels[index]).to(device),
                              torch.from_numpy(train.causes[index]).to(device), config,
                              pos_weight, cause_pos_weight, copies=logits[len(index):])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        if progress:
            progress("advance", 1)
    distributed.broadcast_buffers(model)  # BatchNorm statistics: rank 0's, on every rank
    return distributed.all_reduce_mean(total / max(1, steps))


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    with (out / "history.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(history)


def train(config: TrainConfig, data: Path | str, out: Path | str, *, resume: bool = False,
          cache_dir: Path | None = None, progress: ProgressCallback | None = None,
          stop_after_epoch: int | None = None, device: str | torch.device = "cpu") -> Path:
    """Train on ``data`` (its ``train/`` split, or the class folders directly) into ``out``.

    Args:
        config: the hyper-parameters.
        data: the data root.
        out: output folder; gets model.safetensors, model.json, config.toml, history.csv,
            curves.png and the checkpoint files.
        resume: continue from ``out``'s checkpoint instead of starting anew.
        cache_dir: where decoded images are cached (default: ``~/.cache/pneumoscan``).
        progress: optional progress callback (the CLI passes a rich progress bar).
        stop_after_epoch: stop (as if killed) after this many epochs; for tests of resume.
        device: "cpu", "cuda" or "auto" (CUDA when present). Under torchrun, call this
            inside ``pneumoscan.fitting.distributed.process_group()``, on every process.

    Returns:
        The output folder.
    """
    out = Path(out)
    device = distributed.select_device(device)
    world, main = distributed.world_size(), distributed.is_main_process()
    if distributed.launched_by_torchrun() and world == 1:
        raise RuntimeError("started by torchrun, but no process group: call train() inside "
                           "pneumoscan.fitting.distributed.process_group()")
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} does not split over {world} "
                         f"processes; choose a multiple of {world}")
    if config.threads:
        torch.set_num_threads(config.threads)
    found = discover(data).splits
    pool = found.get("train") or found.get("all")
    if not pool:
        raise DataLayoutError(f"{data}: no train/ split to train on")
    absent = [name for k, name in enumerate(CLASS_NAMES) if all(s.label != k for s in pool)]
    if absent:  # fail now, not after an epoch with an AUC that cannot be computed
        raise DataLayoutError(f"{data}: no {'/, '.join(absent)}/ images to train on; training "
                              "needs both NORMAL/ and PNEUMONIA/")
    if config.threshold_rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold_rule {config.threshold_rule!r}; expected one of "
                         f"{THRESHOLD_RULES}")
    split = split_for_training(pool, config.val_fraction,
                               split_seed(config.seed, config.split_seed),
                               config.protocol_fraction, config.edge_blocks)
    train_samples, val_samples = split.train, split.validation
    logger.info("train: %s", describe(train_samples))
    logger.info("validation (patient-level, %.0f%%): %s", config.val_fraction * 100,
                describe(val_samples))
    if split.protocol:
        logger.info("held out, out of protocol (blocks of consecutive patients, %.0f%%): %s",
                    config.protocol_fraction * 100, describe(split.protocol))
    if split.edge:
        logger.info("held out, edge of time (first and last %d of 20 blocks of each "
                    "series): %s", config.edge_blocks, describe(split.edge))
    if resume and not (out / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{out / CHECKPOINT}: nothing to resume; run without --resume")
    if not resume and (out / CHECKPOINT).is_file():
        raise FileExistsError(f"{out} already holds a checkpoint; pass --resume to continue it "
                              "or choose another --out")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(dump_config(config))

    preprocess = PreprocessConfig(image_size=config.image_size, equalize=config.equalize,
                                  equalize_midtones=config.equalize_midtones,
                                  source_size=config.source_size)
    with distributed.main_process_first():  # rank 0 fills the image cache, the others read it
        train_arrays = _to_arrays(train_samples, preprocess, cache_dir, progress)
        val_arrays = _to_arrays(val_samples, preprocess, cache_dir, progress)
    pos_weight = _pos_weight(train_arrays.labels)
    cause_pos_weight = _pos_weight(train_arrays.causes[train_arrays.causes >= 0])

    seed_everything(config.seed)
    model = create_model(config.arch, pretrained=config.pretrained, dropout=config.dropout,
                         flip_average=config.flip_average).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    state: dict[str, Any] = {"epoch": 0, "best_auc": -1.0, "best_epoch": 0, "history": [],
                             "train_seconds": 0.0}
    if resume:
        state = load_checkpoint(out, model, optimizer)
        logger.info("resuming after epoch %d (best AUC %.4f at epoch %d)", state["epoch"],
                    state["best_auc"], state["best_epoch"])
    net = distributed.wrap_model(model, device)  # checkpoints keep using the bare model

    steps = len(train_arrays.labels) // config.batch_size
    interrupted = False
    for epoch in range(state["epoch"], config.epochs):
        if (epoch - state["best_epoch"] >= config.patience and state["best_epoch"] > 0
                and not config.select_last_epoch):
            logger.info("early stop: no better validation AUC for %d epochs", config.patience)
            break
        started = time.perf_counter()
        if progress:
            progress("start", steps)
        train_loss = _train_epoch(net, optimizer, train_arrays, preprocess, config, epoch,
                                  pos_weight, cause_pos_weight, progress, device)
        scores, _ = _validate(model, val_arrays, preprocess, config, pos_weight,
                              cause_pos_weight, device)
        seconds = time.perf_counter() - started
        row = {"epoch": epoch + 1, "train_loss": round(train_loss, 6),
               **{k: round(v, 6) for k, v in scores.items()},
               "lr": learning_rate(config, (epoch + 1) * steps - 1, steps),
               "seconds": round(seconds, 1)}
        state["history"].append(row)
        state["train_seconds"] += seconds
        state["epoch"] = epoch + 1
        if scores["val_auc"] > state["best_auc"] or config.select_last_epoch:
            state["best_auc"], state["best_epoch"] = scores["val_auc"], epoch + 1
        if main:  # every epoch's weights: the chosen one is read back from here at the end,
            # and the shift suite can compare epochs later
            epoch_weights(out, epoch + 1).parent.mkdir(exist_ok=True)
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(epoch_weights(out, epoch + 1)))
        if main:
            logger.info("epoch %d/%d  train loss %.4f  val loss %.4f  val AUC %.4f  "
                        "cause AUC %.4f  %.0fs", epoch + 1, config.epochs, train_loss,
                        scores["val_loss"], scores["val_auc"], scores["val_cause_auc"],
                        seconds)
            save_checkpoint(out, model, optimizer, state)
            _write_history(out, state["history"])
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            interrupted = True
            break

    if world > 1:
        digest = distributed.check_in_sync(model)
        if main:
            logger.info("weights identical on all %d processes (sha256 %s)", world, digest)
    if main and not interrupted:
        model.load_state_dict(load_file(str(epoch_weights(out, state["best_epoch"]))))
        _finish(model, config, preprocess, val_arrays, train_arrays.samples, split, pool,
                state, out, device, cache_dir)
    distributed.barrier()  # the others wait until the model is written
    return out


def _held_out_arrays(split: TrainingSplit, preprocess: PreprocessConfig,
                     cache_dir: Path | None) -> dict[str, Arrays]:
    """The held-out sets other than the patient-level validation, by name (those present)."""
    sets = {"out of protocol": split.protocol, "edge of time": split.edge}
    return {name: _to_arrays(samples, preprocess, cache_dir, None)
            for name, samples in sets.items() if samples}


def epoch_weights(out: Path, epoch: int) -> Path:
    """Where a run saves the weights of ``epoch`` (1-based): ``OUT/epochs/epochN.safetensors``."""
    return out / "epochs" / f"epoch{epoch}.safetensors"


def _finish(model: PneumoniaNet, config: TrainConfig, preprocess: PreprocessConfig,
            val: Arrays, train_samples: list[Sample], split: TrainingSplit,
            pool: list[Sample], state: dict[str, Any], out: Path,
            device: torch.device = torch.device("cpu"), cache_dir: Path | None = None) -> None:
    """Calibrate and pick the threshold on validation, write the model and its card and the
    digests of its split's files, then fit its input-scope check on the training images."""
    logits = predict_logits(model, val.pixels, preprocess, device=device)
    # The operating point suits shifted films too: the threshold rule sees the validation
    # images under every shift of the suite (at source size, before the model's resize),
    # pooled with the clean ones, whose logits are those above.
    source, _ = load_resized(val.samples, max(SOURCE_SIZE, config.image_size),
                             cache_dir=cache_dir)
    shifted_logits = {"none": logits[:, 0]} | {
        shift.name: predict_logits(model, resize_all(shifted, config.image_size), preprocess,
                                   device=device)[:, 0]
        for shift, shifted in shifted_sets(source, SHIFTS[1:])}  # SHIFTS[0] is "none"
    held_out = {"validation": (val.labels, logits[:, 0])} | {
        name: (arrays.labels, predict_logits(model, arrays.pixels, preprocess,
                                             device=device)[:, 0])
        for name, arrays in _held_out_arrays(split, preprocess, cache_dir).items()}
    if config.threshold_rule == "worst-case":
        temperature, bias, threshold, decided = fit_worst_case_operating_point(
            val.labels, shifted_logits, held_out, min_sensitivity=config.min_sensitivity)
        rule = (f"prevalence-neutral Platt scaling on the {len(held_out)} held-out sets "
                f"pooled; the most specific threshold keeping sensitivity >= "
                f"{config.min_sensitivity} on each of: the validation images clean and under "
                f"the {len(SHIFTS) - 1} shifts of the shift suite pooled, "
                f"{', '.join(n for n in held_out if n != 'validation')} (decided by: "
                f"{decided})")
    else:
        temperature, bias, threshold = fit_operating_point(
            val.labels, shifted_logits, min_sensitivity=config.min_sensitivity,
            plateau=config.threshold_plateau)
        rule = (f"median of thresholds with validation sensitivity >= "
                f"{config.min_sensitivity} and Youden J within "
                f"{config.threshold_plateau} of its best, on "
                "Platt-scaled probabilities of a class-weighted model, over the validation "
                f"images clean and under the {len(SHIFTS) - 1} shifts of the "
                "shift suite pooled")
    probabilities = apply_temperature(logits[:, 0], temperature, bias)
    validation = compute_metrics(val.labels, probabilities, threshold)
    validation["held_out"] = {
        name: compute_metrics(labels, apply_temperature(z, temperature, bias), threshold)
        for name, (labels, z) in held_out.items() if name != "validation"}
    known = val.causes >= 0
    cause_temperature = 1.0
    if known.any() and len(set(val.causes[known])) == 2:
        cause_temperature = fit_temperature(logits[known, 1], val.causes[known])
        cause_probability = apply_temperature(logits[known, 1], cause_temperature)
        cause = compute_metrics(val.causes[known], cause_probability, 0.5)
        validation["cause_auc"] = cause["auc"]
        validation["cause_auc_ci95"] = cause["auc_ci95"]
        validation["cause_accuracy"] = cause["accuracy"]
        validation["cause_n"] = cause["n"]
    card = ModelCard(
        arch=config.arch,
        preprocessing=preprocess,
        threshold=threshold,
        temperature=temperature,
        bias=bias,
        cause_temperature=cause_temperature,
        threshold_rule=rule,
        flip_average=config.flip_average,
        heatmap_scale=fit_heatmap_scale(model, val, preprocess, device),
        validation=validation,
        data_fingerprint=fingerprint(pool),
        training={"config": config.to_dict(), "epochs_run": state["epoch"],
                  "best_epoch": state["best_epoch"],
                  "train_minutes": round(state["train_seconds"] / 60, 1),
                  "n_train": len(train_samples), "n_val": len(val.samples),
                  "parameters": count_parameters(model), "threads": torch.get_num_threads(),
                  "processes": distributed.world_size(), "device": device.type},
        version=(f"{config.arch}-{config.image_size}px{'-eq' if config.equalize else ''}"
                 f"-{datetime.now(UTC):%Y%m%d}"),
        package_version=__version__,
        git_commit=_git_commit(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    save_model(model, card, out)
    # Which files the model has seen, so that evaluate can warn when it is shown them again.
    save_training_files(record_split(split, card.data_fingerprint), out)
    np.savez(out / "validation_logits.npz", logits=logits, labels=val.labels,
             causes=val.causes, files=np.array([s.path.name for s in val.samples]))
    _plot_curves(state["history"], out / "curves.png")
    logger.info("validation: AUC %.4f [%.4f, %.4f]  sensitivity %.3f  specificity %.3f  "
                "at threshold %.2f (T=%.2f)", validation["auc"], *validation["auc_ci95"],
                validation["sensitivity"], validation["specificity"], threshold, temperature)
    # The input-scope check is part of the model: fitted on its training images, stored
    # beside the weights (pneumoscan.fitting.scope_fitting; `pneumoscan fit-scope` does the same).
    scope, _ = fit_scope(out, train_samples, cache_dir=cache_dir)
    logger.info("scope check %s", describe_scope(scope))
    fit_reference(out, val.samples, cache_dir=cache_dir)  # what `site-check` compares with
    _fit_population(out, config, train_samples, cache_dir)


def _fit_population(out: Path, config: TrainConfig, train_samples: list[Sample],
                    cache_dir: Path | None) -> None:
    """Fit the population check on the training images and ``config.adults`` (the fitting
    share of their patients), or say how to fit it later."""
    if not config.adults:
        logger.warning("population check not fitted (no adult films given): every image "
                       "without an age in its DICOM header will be 'unknown'; run `%s`",
                       POPULATION.command(out))
        return
    classifier, _, _ = fit_population_on_folders(out, train_samples, config.adults,
                                                cache_dir=cache_dir)
    logger.info("population check %s", describe_population(classifier))


def fit_heatmap_scale(model: PneumoniaNet, val: Arrays, preprocess: PreprocessConfig,
                      device: torch.device = torch.device("cpu")) -> float:
    """The model-wide heat-map scale: :func:`pneumoscan.heatmap.heatmap_scale` of the
    evidence maps of the validation pneumonia images."""
    pneumonia = val.pixels[val.labels == 1]
    return heatmap_scale(predict_evidence(model, pneumonia, preprocess, device=device))


def _plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    left.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    left.legend()
    right.plot(epochs, [r["val_auc"] for r in history], "o-", label="pneumonia")
    right.plot(epochs, [r["val_cause_auc"] for r in history], "o-", label="bacterial vs viral")
    right.set(xlabel="epoch", ylabel="ROC AUC", title="Validation AUC")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
