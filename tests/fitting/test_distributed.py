"""pneumoscan.fitting.distributed, and real 2-process torchrun runs (gloo on the CPU).

The slow tests launch ``python -m torch.distributed.run --standalone --nproc-per-node 2``:
``-m pneumoscan train`` for training, and this very file as the script of each process
for the runs that need code of their own (see ``_worker`` at the bottom).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pneumoscan.fitting import distributed

TINY_CONFIG = """\
arch = "simple_cnn"
pretrained = false
image_size = 32
epochs = 2
batch_size = 4
patience = 10
"""
TIMEOUT = 600  # seconds per launch, against hangs only: ~30 s on an idle 2-core machine,
#               but minutes when a training job shares those cores
DIGEST = re.compile(r"weights identical on all 2 processes \(sha256 ([0-9a-f]{64})\)")


# ---- the single-process behaviour of the helpers ----------------------------------------

def test_single_process_helpers_are_identities(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_collectives(*args: object, **kwargs: object) -> None:
        raise AssertionError("a collective ran without a process group")

    for name in ("barrier", "all_reduce", "all_gather_object", "broadcast"):
        monkeypatch.setattr(torch.distributed, name, no_collectives)
    assert (distributed.world_size(), distributed.rank()) == (1, 0)
    assert distributed.is_main_process()
    assert distributed.all_reduce_mean(2.5) == 2.5
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    part = np.arange(6).reshape(3, 2)
    assert distributed.gather_strided(part, 3) is part
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, torch.device("cpu")) is model
    distributed.barrier()
    distributed.broadcast_buffers(torch.nn.BatchNorm1d(2))
    ran = []
    with distributed.main_process_first():
        ran.append(distributed.rank())
    assert ran == [0]


def test_select_device() -> None:
    assert distributed.select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert distributed.select_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        distributed.select_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            distributed.select_device("cuda")


def test_process_group_without_torchrun_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.process_group("cpu") as device:
        assert device == torch.device("cpu")
        assert not torch.distributed.is_initialized()


def test_autocast_only_on_cuda() -> None:
    """On the CPU no autocast: under torch.autocast("cpu") a product would be bfloat16."""
    with torch.autocast("cpu"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with distributed.autocast(torch.device("cpu")):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32


def test_state_digest_sees_every_bit() -> None:
    state = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}  # 0-d buffers too
    same = {"n": torch.tensor(3), "w": torch.tensor([1.0, 2.0])}
    assert distributed.state_digest(state) == distributed.state_digest(same)
    nudged = {"w": torch.tensor([1.0, np.nextafter(2.0, 3.0)]), "n": torch.tensor(3)}
    assert distributed.state_digest(state) != distributed.state_digest(nudged)
    model = torch.nn.Linear(2, 2)
    assert distributed.check_in_sync(model) == distributed.state_digest(model.state_dict())


def test_train_rejects_a_batch_that_does_not_split(monkeypatch: pytest.MonkeyPatch,
                                                   synthetic_dataset: Path,
                                                   tmp_path: Path) -> None:
    from pneumoscan.fitting.config import TrainConfig
    from pneumoscan.fitting.training import train

    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="batch_size 4 does not split over 3 processes"):
        train(TrainConfig(arch="simple_cnn", pretrained=False, batch_size=4),
              synthetic_dataset, tmp_path / "out")


# ---- real torchrun launches ---------------------------------------------------------------

def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Two processes on this machine; --standalone picks a free rendezvous port itself."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "COLUMNS": "400"}  # rich must not wrap the digest across lines
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", *args]
    # A session of its own, so that a hang kills the workers too, not just torchrun.
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as launch:
        try:
            stdout, stderr = launch.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            stdout, stderr = launch.communicate()
            pytest.fail(f"torchrun still running after {TIMEOUT} s: {stderr[-3000:]}")
    done = subprocess.CompletedProcess(command, launch.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _checkpoint_digest(out: Path) -> str:
    tensors = load_file(str(out / "checkpoint.safetensors"))
    return distributed.state_digest({k[len("model."):]: v for k, v in tensors.items()
                                     if k.startswith("model.")})


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.mark.slow
def test_torchrun_train_and_resume_two_processes(synthetic_dataset: Path, tiny_config: Path,
                                                 tmp_path: Path) -> None:
    """``torchrun -m pneumoscan train``; then a run killed after epoch 1 and resumed
    under DDP, which must end with the same weights."""
    out, resumed = tmp_path / "ddp", tmp_path / "resumed"
    done = _torchrun(["-m", "pneumoscan", "train", "--data", str(synthetic_dataset),
                      "--out", str(out), "--config", str(tiny_config), "--device", "cpu",
                      "--cache-dir", str(tmp_path / "cache")], cwd=tmp_path)
    log = done.stdout + done.stderr

    assert sorted(p.name for p in out.glob("checkpoint*")) == ["checkpoint.json",
                                                               "checkpoint.safetensors"]
    assert (out / "model.safetensors").is_file() and (out / "model.json").is_file()
    with (out / "history.csv").open() as handle:
        history = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in history] == [1, 2]  # one writer: no duplicate rows
    assert all(math.isfinite(float(row[k])) for row in history
               for k in ("train_loss", "val_loss"))
    assert log.count("epoch 1/2") == 1  # rank 0 logs, rank 1 does not
    # Both ranks hashed their weights and found them equal; rank 0's checkpoint is them.
    digests = DIGEST.findall(log)
    assert len(digests) == 1, log[-3000:]
    assert digests[0] == _checkpoint_digest(out)
    assert json.loads((out / "model.json").read_text())["training"]["processes"] == 2

    _torchrun([__file__, "train-resume", str(synthetic_dataset), str(resumed),
               str(tiny_config), str(tmp_path / "cache")], cwd=tmp_path)
    history = json.loads((resumed / "checkpoint.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert _checkpoint_digest(resumed) == _checkpoint_digest(out)


def _prediction_rows(predictor: Any, calls: list[str]) -> Callable[[list[Path]], list[dict]]:
    """A ``predict_rows`` for run_sharded that also notes which files it was asked for."""
    def predict_rows(files: list[Path]) -> list[dict]:
        calls.extend(str(f) for f in files)
        rows = []
        for result in predictor.predict_files(files, batch_size=4):
            row = {"file": result.file, "label": None, "probability": None,
                   "cause_probability": None, "error": result.error}
            if result.prediction is not None:
                row.update({k: getattr(result.prediction, k) for k in
                            ("label", "probability", "cause_probability")})
            rows.append(row)
        return rows
    return predict_rows


def _prediction_inputs(images: Path) -> list[Path]:
    return [*sorted(images.rglob("*.jpeg")), images / "broken.png"]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _assert_same_rows(got: list[dict[str, str]], expected: list[dict[str, str]]) -> None:
    assert [r["file"] for r in got] == [r["file"] for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            if key.endswith("probability") and mine[key]:
                assert float(mine[key]) == pytest.approx(float(theirs[key]), abs=1e-6)
            else:
                assert mine[key] == theirs[key]


@pytest.mark.slow
def test_torchrun_sharded_prediction_equals_one_process(synthetic_dataset: Path,
                                                        tiny_model_dir: Path,
                                                        tmp_path: Path) -> None:
    from pneumoscan import Predictor
    from pneumoscan.reports.sharded_prediction import run_sharded

    (synthetic_dataset / "broken.png").write_bytes(b"not an image")  # an error row too
    files = _prediction_inputs(synthetic_dataset)
    reference = tmp_path / "one.csv"
    run_sharded(files, _prediction_rows(Predictor.load(tiny_model_dir, backend="torch"), []),
                reference)
    expected = _read_csv(reference)
    work = tmp_path / "work"
    work.mkdir()
    with (work / "partial.csv").open("w", newline="") as handle:  # an interrupted earlier run
        writer = csv.DictWriter(handle, fieldnames=list(expected[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(expected[:10])

    _torchrun([__file__, "predict", str(tiny_model_dir), str(synthetic_dataset), str(work)],
              cwd=tmp_path)

    calls = [json.loads((work / f"calls{rank}.json").read_text()) for rank in (0, 1)]
    full = [set(c["full"]) for c in calls]
    assert full[0] and full[1] and not full[0] & full[1]  # each rank its own share
    assert full[0] | full[1] == {str(f) for f in files}
    assert calls[0]["rerun"] == calls[1]["rerun"] == []  # everything was done already
    assert set(calls[0]["partial"] + calls[1]["partial"]) == \
        {str(f) for f in files} - {row["file"] for row in expected[:10]}
    _assert_same_rows(_read_csv(work / "full.csv"), expected)
    _assert_same_rows(_read_csv(work / "partial.csv"), expected)
    assert not list(work.glob("*.part*"))
    assert next(r for r in expected if r["file"].endswith("broken.png"))["error"]


# ---- what each torchrun process runs ------------------------------------------------------

def _worker(mode: str, *args: str) -> None:
    import logging

    from pneumoscan.fitting.config import load_config
    from pneumoscan.fitting.training import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if mode == "train-resume":
        data, out, config, cache = (Path(a) for a in args)
        settings = load_config(config)
        with distributed.process_group("cpu"):
            train(settings, data, out, cache_dir=cache, stop_after_epoch=1)  # "killed"
            train(settings, data, out, cache_dir=cache, resume=True)
    elif mode == "predict":
        from pneumoscan import Predictor
        from pneumoscan.reports.sharded_prediction import run_sharded

        model, images, work = (Path(a) for a in args)
        predictor = Predictor.load(model, backend="torch")
        files = _prediction_inputs(images)
        calls: dict[str, list[str]] = {}
        with distributed.process_group("cpu"):
            for name, out in (("full", "full.csv"), ("rerun", "full.csv"),
                              ("partial", "partial.csv")):
                calls[name] = []
                run_sharded(files, _prediction_rows(predictor, calls[name]), work / out,
                            chunk_size=8)
        rank = os.environ["RANK"]
        (work / f"calls{rank}.json").write_text(json.dumps(calls))
    else:
        raise ValueError(f"unknown worker mode {mode!r}")


if __name__ == "__main__":  # torchrun runs this file as the script of each process
    _worker(*sys.argv[1:])
