"""CPU inference speed: pneumoscan's model in PyTorch and ONNX Runtime, side by side with
DenseNet-121 (the CheXNet / torchxrayvision architecture) and ResNet-50 (the MedMNIST
baseline), in one run on one machine: one table and the ratios between the engines.

Usage (from the repository root, after ``make install``):

    .venv/bin/python benchmarks/bench_inference.py [--json bench.json] [--model PATH]
        [--data ../shared/data/chest_xray] [--threads N] [--rounds N] [--quick]

Each engine runs in its own fresh process (so peak memory is its own):

- (a) the model in PyTorch (the ``torch`` backend: inference mode, channels-last);
- (b) the same model in ONNX Runtime (the ``onnx`` backend; this process never imports
  PyTorch);
- (c) DenseNet-121 and (d) ResNet-50 from timm, 224 px, 1 input channel, 1 output, random
  weights, run exactly like (a), in the same passes of
  ``inference.IMAGES_PER_PASS`` images that every engine here takes a batch in.

Model inputs are real shared X-rays through pneumoscan's own ``preprocess``. Before timing,
the ONNX graph is compared with PyTorch on those images (max |logit diff| and labels). The
ONNX file beside the model is used when it matches the weights; otherwise the model is
exported into a temporary folder (nothing is written beside the model). What a web request
adds to the model is measured by ``request_breakdown.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"
BATCH = 32
BASELINES = {"densenet121": "DenseNet-121", "resnet50": "ResNet-50"}
TARGET_ONNX_VS_DENSENET = 10.0
TARGET_LOGIT_DIFF = 1e-4


# ----------------------------------------------------------------------------- helpers


def rss_mib() -> float:
    """Current resident memory of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def time_calls(call: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def measure_engine(run: Callable[[np.ndarray], object], inputs: np.ndarray,
                   args: argparse.Namespace) -> dict[str, float]:
    """Throughput at batch 1 and 32 and single-image latency of ``run`` on ``inputs``.

    ``inputs`` is ``(32, 1, S, S)``; single images cycle through it.
    """
    singles = [inputs[i:i + 1] for i in range(len(inputs))]
    for i in range(args.warmup):
        run(singles[i % len(singles)])
    run(inputs)
    latencies = []
    for i in range(args.singles):
        started = time.perf_counter()
        run(singles[i % len(singles)])
        latencies.append(time.perf_counter() - started)
    batch_times = time_calls(lambda: run(inputs), args.batches)
    return {
        "batch1_images_per_s": len(latencies) / sum(latencies),
        "batch32_images_per_s": len(inputs) * len(batch_times) / sum(batch_times),
        "latency_p50_ms": percentile_ms(latencies, 50),
        "latency_p95_ms": percentile_ms(latencies, 95),
        "batch32_p50_ms": percentile_ms(batch_times, 50),
    }


def load_inputs(args: argparse.Namespace, image_size: int | None = None,
                n: int = BATCH) -> np.ndarray:
    """``(n, 1, S, S)`` float32 inputs from real X-rays, by pneumoscan's preprocessing with
    the model card's settings (``image_size`` overrides its size, for the baselines)."""
    from dataclasses import replace

    from pneumoscan.fitting.export import sample_images
    from pneumoscan.imaging import load_image
    from pneumoscan.modelfile import resolve_model
    from pneumoscan.preprocessing import normalize, resize_all

    config = resolve_model(args.model).card.preprocessing
    if image_size is not None:
        config = replace(config, image_size=image_size)
    images = (load_image(p) for p in sample_images(args.data, n))
    return normalize(resize_all(images, config.image_size), config)  # as the Predictor does


def torch_cost(model: Any, image_size: int) -> dict[str, float]:
    """Parameters and FLOPs of one image (2 FLOPs per multiply-add, PyTorch's counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 1, image_size, image_size))
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "gflops": counter.get_total_flops() / 1e9}


# ----------------------------------------------------------------------------- workers
# Each runs in its own process (``--worker NAME``) and prints one JSON line.


def worker_prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Find or make the ONNX file, and compare it with PyTorch on real X-rays."""
    from pneumoscan.errors import ModelFileError
    from pneumoscan.fitting.export import compare_with_torch, export_onnx, sample_images
    from pneumoscan.onnx_backend import OnnxBackend, onnx_path_for

    beside = onnx_path_for(args.model)
    exported = False
    try:
        OnnxBackend(args.model, threads=1)
        onnx_path = beside
    except ModelFileError:
        onnx_path = Path(args.workdir) / "model.onnx"
        export_onnx(args.model, onnx_path)
        exported = True
    images = sample_images(args.data, args.parity_images)
    report = compare_with_torch(args.model, onnx_path, images)
    return {"onnx_path": str(onnx_path), "exported_for_benchmark": exported,
            "onnx_mb": onnx_path.stat().st_size / 1e6, "parity": report.to_dict()}


def worker_torch(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from pneumoscan.backends import TorchBackend

    torch.set_num_threads(args.threads)
    baseline = rss_mib()
    backend = TorchBackend(args.model, threads=args.threads)
    size = backend.card.preprocessing.image_size
    inputs = load_inputs(args)
    result = measure_engine(backend.run, inputs, args)
    cost = torch_cost(backend.model, size)
    return {**result, **cost, "image_size": size, "arch": backend.card.arch,
            "baseline_rss_mib": baseline, "peak_rss_mib": peak_rss_mib()}


def worker_onnx(args: argparse.Namespace) -> dict[str, Any]:
    from pneumoscan.modelfile import resolve_model
    from pneumoscan.onnx_backend import OnnxBackend

    baseline = rss_mib()
    backend = OnnxBackend(args.model, onnx_path=args.onnx, threads=args.threads)
    size = resolve_model(args.model).card.preprocessing.image_size
    inputs = load_inputs(args)
    result = measure_engine(backend.run, inputs, args)
    return {**result, "image_size": size, "baseline_rss_mib": baseline,
            "peak_rss_mib": peak_rss_mib(), "imports_torch": "torch" in sys.modules}


def worker_baseline(args: argparse.Namespace, name: str) -> dict[str, Any]:
    import timm
    import torch

    from pneumoscan.backends import prepare_torch_model
    from pneumoscan.inference import in_passes

    torch.set_num_threads(args.threads)
    baseline = rss_mib()
    model = prepare_torch_model(timm.create_model(name, pretrained=False, in_chans=1,
                                                  num_classes=1))
    inputs = load_inputs(args, 224)

    def forward(batch: np.ndarray) -> tuple[np.ndarray]:
        with torch.inference_mode():
            return (model(torch.from_numpy(batch)).numpy(),)

    def run(batch: np.ndarray) -> tuple[np.ndarray, ...]:  # in passes, like (a) and (b)
        return in_passes(forward, batch)

    result = measure_engine(run, inputs, args)
    return {**result, **torch_cost(model, 224), "image_size": 224,
            "baseline_rss_mib": baseline, "peak_rss_mib": peak_rss_mib()}


WORKERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "prepare": worker_prepare,
    "torch": worker_torch,
    "onnx": worker_onnx,
    "densenet121": lambda args: worker_baseline(args, "densenet121"),
    "resnet50": lambda args: worker_baseline(args, "resnet50"),
}


# ----------------------------------------------------------------------------- driver


ENGINES = ("torch", "onnx", "densenet121", "resnet50")


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure at its best over the rounds (the least disturbed), memory at its worst."""
    best = dict(runs[0])
    for key in best:
        values = [run[key] for run in runs]
        if key.endswith("images_per_s"):
            best[key] = max(values)
        elif key.endswith("_ms"):
            best[key] = min(values)
        elif key.endswith("rss_mib"):
            best[key] = max(values)
    best["rounds"] = len(runs)
    return best


def run_worker(name: str, args: argparse.Namespace, **extra: str) -> dict[str, Any]:
    """Run one worker in a fresh interpreter and return its JSON result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
               "--model", str(args.model), "--data", str(args.data),
               "--threads", str(args.threads), "--singles", str(args.singles),
               "--batches", str(args.batches), "--warmup", str(args.warmup),
               "--parity-images", str(args.parity_images), "--workdir", str(args.workdir)]
    for key, value in extra.items():
        command += [f"--{key}", value]
    print(f"  {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"benchmark worker {name!r} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["worker_seconds"] = round(time.perf_counter() - started, 1)
    return result


def describe_machine(threads: int) -> dict[str, Any]:
    cpu, flags = "unknown", []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = [f for f in line.split(":", 1)[1].split()
                         if f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                  "amx_tile")]
                break
    memory_gib = float("nan")
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory_gib = round(total_kib / 1024**2, 1)
    versions: dict[str, str | None] = {}
    for package in ("torch", "onnxruntime", "timm", "numpy", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    from pneumoscan.backends import default_threads

    return {"cpu": cpu, "cpu_flags": flags, "logical_cpus": os.cpu_count(),
            "usable_cpus": default_threads(), "threads": threads, "memory_gib": memory_gib,
            "os": platform.platform(), "python": platform.python_version(), "versions": versions,
            "load_average_before": list(os.getloadavg())}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)


def compute_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    b32 = {k: results[k]["batch32_images_per_s"] for k in ENGINES}
    return {
        "onnx_vs_densenet121_batch32": ratio(b32["onnx"], b32["densenet121"]),
        "torch_vs_densenet121_batch32": ratio(b32["torch"], b32["densenet121"]),
        "onnx_vs_resnet50_batch32": ratio(b32["onnx"], b32["resnet50"]),
        "onnx_vs_torch_batch32": ratio(b32["onnx"], b32["torch"]),
    }


def format_table(report: dict[str, Any]) -> str:
    """The figures as a Markdown table (pasted as is into docs/benchmarks.md)."""
    results, arch = report["results"], report["results"]["torch"]["arch"]
    size = report["results"]["torch"]["image_size"]
    rows = [("(a) pneumoscan " + arch, "PyTorch", results["torch"], results["torch"]),
            ("(b) pneumoscan " + arch, "ONNX Runtime", results["onnx"], results["torch"]),
            ("(c) DenseNet-121", "PyTorch", results["densenet121"], results["densenet121"]),
            ("(d) ResNet-50", "PyTorch", results["resnet50"], results["resnet50"])]
    lines = [f"Threads: {report['machine']['threads']}. pneumoscan input {size} px; "
             "baselines 224 px, 1 channel, 1 output, random weights.", "",
             "| model | engine | params (M) | GFLOPs/image | images/s, batch 1 | "
             "images/s, batch 32 | latency p50 (ms) | latency p95 (ms) | peak RSS (MiB) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, engine, figures, cost in rows:
        lines.append(f"| {name} | {engine} | {cost['parameters'] / 1e6:.2f} | "
                     f"{cost['gflops']:.2f} | {figures['batch1_images_per_s']:.1f} | "
                     f"{figures['batch32_images_per_s']:.1f} | "
                     f"{figures['latency_p50_ms']:.1f} | {figures['latency_p95_ms']:.1f} | "
                     f"{figures['peak_rss_mib']:.0f} |")
    parity = report["parity"]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {key} | {value if value is not None else 'n/a'} |"
              for key, value in report["ratios"].items()]
    lines += ["", f"ONNX parity on {parity['n_images']} real X-rays: max |logit diff| "
              f"{parity['max_abs_diff_logits']:.1e}, same labels {parity['same_labels']}/"
              f"{parity['n_images']}."]
    return "\n".join(lines)


def check_targets(report: dict[str, Any]) -> list[str]:
    """One line per target of issue 6: PASS or FAIL with the figure."""
    ratios, parity = report["ratios"], report["parity"]
    checks = [
        ("ONNX batch 32 >= 10x DenseNet-121",
         (ratios["onnx_vs_densenet121_batch32"] or 0) >= TARGET_ONNX_VS_DENSENET,
         f"{ratios['onnx_vs_densenet121_batch32']}x"),
        ("ONNX parity <= 1e-4 and the same labels",
         parity["max_abs_diff_logits"] <= TARGET_LOGIT_DIFF
         and parity["same_labels"] == parity["n_images"],
         f"{parity['max_abs_diff_logits']:.1e}, {parity['same_labels']}/"
         f"{parity['n_images']}"),
    ]
    return [f"{'PASS' if ok else 'FAIL'}  {name}: {value}" for name, ok, value in checks]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from pneumoscan.backends import default_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder or .safetensors file (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder of real X-rays (default: ../shared/data/chest_xray)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="intra-op threads for every engine (default: usable CPUs)")
    parser.add_argument("--singles", type=int, default=100,
                        help="single-image runs per engine (latency, batch-1 throughput)")
    parser.add_argument("--batches", type=int, default=10, help="batch-32 runs per engine")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the four engines this many times, round-robin, and keep "
                             "each figure's best (for a machine that is not quiet)")
    parser.add_argument("--parity-images", type=int, default=64,
                        help="real X-rays to compare ONNX with PyTorch on")
    parser.add_argument("--quick", action="store_true",
                        help="few repeats: checks that the script works, figures are rough")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--onnx", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.singles, args.batches, args.warmup, args.parity_images = 10, 2, 2, 16
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    from pneumoscan.modelfile import resolve_model

    args.model = resolve_model(args.model).weights  # fails early, with the reason
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no folder of X-rays; pass --data (the benchmark "
                         "runs on real images)")
    machine = describe_machine(args.threads)
    with tempfile.TemporaryDirectory(prefix="pneumoscan-bench-") as workdir:
        args.workdir = workdir
        print(f"benchmarking {args.model} on {machine['cpu']}, {args.threads} threads",
              file=sys.stderr)
        prepared = run_worker("prepare", args)
        onnx = prepared["onnx_path"]
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in ENGINES}
        for _ in range(args.rounds):  # round-robin, so a disturbance spreads over engines
            for name in ENGINES:
                rounds[name].append(run_worker(name, args, onnx=onnx))
        results = {name: best_of(runs) for name, runs in rounds.items()}
    machine["load_average_after"] = list(os.getloadavg())
    report = {"model": str(args.model), "machine": machine,
              "settings": {k: getattr(args, k) for k in
                           ("threads", "singles", "batches", "warmup", "rounds",
                            "quick")},
              "onnx": {k: v for k, v in prepared.items() if k != "parity"},
              "parity": prepared["parity"], "results": results}
    report["ratios"] = compute_ratios(results)
    if machine["load_average_before"][0] > 0.5 * machine["usable_cpus"]:
        report["warning"] = (f"the machine was busy (load average "
                             f"{machine['load_average_before'][0]:.1f} on "
                             f"{machine['usable_cpus']} CPUs): figures are disturbed")
    if args.json:  # first, so the figures survive a failure below
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{machine['cpu']} ({' '.join(machine['cpu_flags'])}), {machine['usable_cpus']} "
          f"usable CPUs, {machine['memory_gib']} GiB, {machine['os']}, load average "
          f"{machine['load_average_before'][0]:.1f}\n")
    print(format_table(report))
    print()
    print("\n".join(check_targets(report)))
    if "warning" in report:
        print(f"\nwarning: {report['warning']}")
    if args.json:
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
