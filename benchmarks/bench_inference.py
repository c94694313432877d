"""CPU inference speed: pneumoscan's model in PyTorch and ONNX Runtime, against
DenseNet-121 (the CheXNet / torchxrayvision architecture) and ResNet-50 (the MedMNIST
baseline), plus decoding and the end-to-end web API, in one run on one machine.

Usage (from the repository root, after ``make install``):

    .venv/bin/python benchmarks/bench_inference.py [--json bench.json] [--model PATH]
        [--data ../shared/data/chest_xray] [--threads N] [--quick]

What is measured, each engine in its own fresh process (so peak memory is its own):

- (a) the model in PyTorch (the ``torch`` backend: inference mode, channels-last);
- (b) the same model in ONNX Runtime (the ``onnx`` backend; this process never imports
  PyTorch);
- (c) DenseNet-121 and (d) ResNet-50 from timm, 224 px, 1 input channel, 1 output, random
  weights, run exactly like (a);
- (e) decoding + preprocessing one original-size radiograph (a shared X-ray up-scaled to a
  2000 x 1600 JPEG), as pneumoscan decodes it (the luminance at half scale) and in full;
- the end-to-end ``POST /api/v1/predict`` latency over loopback HTTP (uvicorn in-process,
  ONNX backend, the client in a process of its own), the image sent as a multipart form
  and as the raw body, against the bare model latency at batch 1; and, for scale, a POST
  to a route of the same server that only reads the body (what the HTTP layer costs with
  no work behind it).

Model inputs are real shared X-rays through pneumoscan's own ``preprocess``. Before timing,
the ONNX graph is compared with PyTorch on those images (max |logit diff| and labels). The
ONNX file beside the model is used when it matches the weights; otherwise the model is
exported into a temporary folder (nothing is written beside the model).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"
BATCH = 32
BASELINES = {"densenet121": "DenseNet-121", "resnet50": "ResNet-50"}
LARGE_SIZE = (2000, 1600)  # (width, height) of the "original-size" radiograph
TARGET_ONNX_VS_DENSENET = 10.0
TARGET_END_TO_END_VS_MODEL = 1.5
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
    """``(n, 1, S, S)`` float32 inputs from real X-rays, by pneumoscan's preprocess with
    the model card's settings (``image_size`` overrides its size, for the baselines)."""
    from dataclasses import replace

    from pneumoscan.export import sample_images
    from pneumoscan.imaging import load_image
    from pneumoscan.modelfile import read_card
    from pneumoscan.preprocessing import preprocess

    config = read_card(args.model).preprocessing
    if image_size is not None:
        config = replace(config, image_size=image_size)
    return np.stack([preprocess(load_image(p), config) for p in sample_images(args.data, n)])


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
    from pneumoscan.export import compare_with_torch, export_onnx, sample_images
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
    from pneumoscan.modelfile import read_card
    from pneumoscan.onnx_backend import OnnxBackend

    baseline = rss_mib()
    backend = OnnxBackend(args.model, onnx_path=args.onnx, threads=args.threads)
    size = read_card(args.model).preprocessing.image_size
    inputs = load_inputs(args)
    result = measure_engine(backend.run, inputs, args)
    return {**result, "image_size": size, "baseline_rss_mib": baseline,
            "peak_rss_mib": peak_rss_mib(), "imports_torch": "torch" in sys.modules}


def worker_baseline(args: argparse.Namespace, name: str) -> dict[str, Any]:
    import timm
    import torch

    from pneumoscan.backends import prepare_torch_model

    torch.set_num_threads(args.threads)
    baseline = rss_mib()
    model = prepare_torch_model(timm.create_model(name, pretrained=False, in_chans=1,
                                                  num_classes=1))
    inputs = load_inputs(args, 224)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()  # type: ignore[no-any-return]

    result = measure_engine(run, inputs, args)
    return {**result, **torch_cost(model, 224), "image_size": 224,
            "baseline_rss_mib": baseline, "peak_rss_mib": peak_rss_mib()}


def large_radiograph(data: Path) -> bytes:
    """A shared X-ray up-scaled to an original-size JPEG (quality 90)."""
    from PIL import Image

    from pneumoscan.export import sample_images

    source = Image.open(sample_images(data, 1)[0]).convert("L")
    buffer = io.BytesIO()
    source.resize(LARGE_SIZE, Image.Resampling.BICUBIC).save(buffer, format="JPEG",
                                                            quality=90)
    return buffer.getvalue()


def worker_decode(args: argparse.Namespace) -> dict[str, Any]:
    """(e): decode + preprocess one original-size JPEG, as pneumoscan does (luminance at
    half scale, libjpeg-turbo through simplejpeg) and with a full-size Pillow decode."""
    from PIL import Image

    from pneumoscan.imaging import decode_image
    from pneumoscan.modelfile import read_card
    from pneumoscan.preprocessing import preprocess

    config = read_card(args.model).preprocessing
    data = large_radiograph(args.data)

    def project_path() -> None:  # what the Predictor and the server do
        preprocess(decode_image(data).pixels, config)

    def full_decode() -> None:  # a plain full-size decode, no draft scale
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        preprocess(pixels, config)

    repeats = max(5, args.singles // 2)
    for call in (project_path, full_decode):
        call()
    draft, full = time_calls(project_path, repeats), time_calls(full_decode, repeats)
    return {"width": LARGE_SIZE[0], "height": LARGE_SIZE[1], "jpeg_kb": len(data) / 1024,
            "p50_ms": percentile_ms(draft, 50), "p95_ms": percentile_ms(draft, 95),
            "images_per_s": len(draft) / sum(draft),
            "full_decode_p50_ms": percentile_ms(full, 50),
            "peak_rss_mib": peak_rss_mib()}


def worker_end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    """``POST /api/v1/predict`` over loopback HTTP to uvicorn in this process (ONNX
    backend, one request at a time), the Predictor alone on the same bytes, and the bare
    model on the same image, interleaved call by call so that any disturbance hits all
    of them alike (their ratio is the figure that matters)."""
    from safetensors.numpy import load_file

    from pneumoscan.export import sample_images
    from pneumoscan.imaging import decode_image
    from pneumoscan.modelfile import read_card, resolve_model_paths
    from pneumoscan.onnx_backend import OnnxBackend
    from pneumoscan.predictor import Predictor
    from pneumoscan.preprocessing import preprocess

    weights, _ = resolve_model_paths(args.model)
    card = read_card(args.model)
    predictor = Predictor(OnnxBackend(args.model, onnx_path=args.onnx, threads=args.threads),
                          card, load_file(str(weights))["head.weight"])
    uploads = {"shared_jpeg": sample_images(args.data, 1)[0].read_bytes(),
               "large_jpeg": large_radiograph(args.data)}
    model_input = preprocess(decode_image(uploads["shared_jpeg"]).pixels,
                             card.preprocessing)[None]  # (1, 1, S, S)
    steps: dict[str, Callable[[], float]] = {
        "model": _timed(partial(predictor.backend.run, model_input))}
    for name, data in uploads.items():
        steps[f"predictor_{name}"] = _timed(partial(predictor.predict, data, heatmap=False))
    result: dict[str, Any] = {}
    with ExitStack() as stack:
        try:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            posts = stack.enter_context(_serve(predictor, workdir))
            for way, post in posts.items():
                for name, data in uploads.items():
                    if way in ("http", "http_raw") or name == "shared_jpeg":
                        steps[f"{way}_{name}"] = partial(post, data)
        except ModuleNotFoundError as exc:  # the serve extra is not installed
            result["http_skipped"] = f"{exc.name} is not installed"
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.warmup):
            for call in steps.values():
                call()
        for _ in range(args.singles):
            for name, call in steps.items():
                times[name].append(call())
    for name, seconds in times.items():
        result[f"{name}_p50_ms"] = percentile_ms(seconds, 50)
        result[f"{name}_p95_ms"] = percentile_ms(seconds, 95)
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _timed(call: Callable[[], object]) -> Callable[[], float]:
    """``call`` made to return how long it took, in seconds."""
    def timed() -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started
    return timed


@contextmanager
def _serve(predictor: Any, workdir: Path) -> Iterator[dict[str, Callable[[bytes], float]]]:
    """Run the web app with ``predictor`` on a free loopback port (uvicorn as ``pneumoscan
    serve`` runs it, in a thread of this process) and yield ``post(jpeg) -> seconds``
    functions by step name.

    The requests come from a client in its own process, as every real client is (the
    ``http_client`` worker): ``http`` (a multipart form, what the page and ``curl -F``
    send), ``http_raw`` (the bytes as the body) and ``http_floor`` (the same bytes to a
    route that only reads them: what the HTTP layer costs with no work behind it). For
    comparison with earlier sessions' figures, ``http_inprocess_raw`` sends the body with
    ``http.client`` from this process, which shares the server's interpreter lock and
    costs 0.1-0.3 ms of its own."""
    import http.client
    import socket
    import threading

    import uvicorn
    from fastapi.responses import JSONResponse

    from pneumoscan.server import ServerSettings, create_app

    app = create_app(ServerSettings(backend="onnx"), predictor=predictor)

    async def read_only(request: Any) -> JSONResponse:  # the HTTP layer's own cost
        return JSONResponse({"bytes": len(await request.body())})

    app.add_route("/benchmark/read-only", read_only, methods=["POST"])  # a plain route
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    client = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker",
                               "http_client", "--port", str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdin is not None and client.stdout is not None
    files: dict[bytes, Path] = {}

    def post(data: bytes, content_type: str, path: str = "/api/v1/predict") -> float:
        if data not in files:  # the client reads each body once, from a file
            files[data] = workdir / f"body-{len(files)}.bin"
            files[data].write_bytes(data)
        client.stdin.write(f"{path}\t{content_type}\t{files[data]}\n")
        client.stdin.flush()
        status, seconds = client.stdout.readline().split()
        if status != "200":
            raise RuntimeError(f"POST {path}: HTTP {status}")
        return float(seconds)

    boundary = "pneumoscan-benchmark"

    def multipart(data: bytes) -> float:
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                "filename=\"xray.jpeg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() \
            + data + f"\r\n--{boundary}--\r\n".encode()
        return post(body, f"multipart/form-data; boundary={boundary}")

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post_in_process(data: bytes) -> float:
        started = time.perf_counter()
        connection.request("POST", "/api/v1/predict", data, {"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"POST /api/v1/predict: {response.status}")
        return elapsed

    try:
        yield {"http": multipart, "http_raw": partial(post, content_type="image/jpeg"),
               "http_floor": partial(post, content_type="image/jpeg",
                                     path="/benchmark/read-only"),
               "http_inprocess_raw": post_in_process}
    finally:
        connection.close()
        client.stdin.close()
        client.wait(timeout=30)
        server.should_exit = True
        thread.join(timeout=10)


def worker_http_client(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark's HTTP client, in its own process: for each ``PATH\tCONTENT-TYPE\tFILE``
    line on stdin, POST the file over one keep-alive connection and print the status and
    the round trip in seconds. No client library: the request is one ``sendall`` and the
    response is read to its ``Content-Length``, so the figure is the server's and the
    loopback's, not a client's parser (what a load tester such as wrk measures)."""
    import socket

    connection = socket.create_connection(("127.0.0.1", args.port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bodies: dict[str, bytes] = {}
    for line in sys.stdin:
        path, content_type, file = line.rstrip("\n").split("\t")
        if file not in bodies:
            bodies[file] = Path(file).read_bytes()
        request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                   f"{content_type}\r\nContent-Length: {len(bodies[file])}\r\n\r\n"
                   ).encode() + bodies[file]
        started = time.perf_counter()
        connection.sendall(request)
        status = _read_response(connection)
        print(status, time.perf_counter() - started, flush=True)
    connection.close()
    return {}


def _read_response(connection: Any) -> int:
    """Read one HTTP/1.1 response whole; return its status code."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines[1:]
                  if line.lower().startswith("content-length:"))
    while len(body) < length:
        body += connection.recv(65536)
    return int(lines[0].split()[1])


def worker_ablation(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    """What each setting buys: the model with one setting changed at a time, interleaved
    over three rounds so a passing disturbance hits every variant alike. PyTorch and ONNX
    Runtime variants run in separate processes (PyTorch's idle OpenMP threads keep
    spinning for a while and would slow ONNX Runtime down)."""
    variants = _torch_variants(args) if engine == "torch" else _onnx_variants(args)
    inputs = load_inputs(args)
    singles = [inputs[i:i + 1] for i in range(len(inputs))]
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    batches: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():  # warm-up
        run(singles[0])
        run(inputs)
    for _ in range(3):
        for name, run in variants.items():
            for i in range(max(3, args.singles // 3)):
                latencies[name] += time_calls(partial(run, singles[i % len(singles)]), 1)
            batches[name] += time_calls(partial(run, inputs), max(1, args.batches // 3))
    return {"variants": {
        name: {"latency_p50_ms": percentile_ms(latencies[name], 50),
               "batch32_images_per_s": len(inputs) / float(np.median(batches[name]))}
        for name in variants}}


def _torch_variants(args: argparse.Namespace) -> dict[str, Callable[[np.ndarray], object]]:
    import torch

    from pneumoscan.modelfile import load_model

    torch.set_num_threads(args.threads)
    plain, _ = load_model(args.model)
    channels_last, _ = load_model(args.model)
    channels_last.to(memory_format=torch.channels_last)

    def variant(model: Any, context: Callable[[], Any]) -> Callable[[np.ndarray], object]:
        def run(batch: np.ndarray) -> object:
            with context():
                return model.forward_with_features(torch.from_numpy(batch))
        return run

    return {"torch, no_grad, NCHW": variant(plain, torch.no_grad),
            "torch, inference_mode, NCHW": variant(plain, torch.inference_mode),
            "torch, inference_mode, channels-last (torch backend)":
                variant(channels_last, torch.inference_mode)}


def _onnx_variants(args: argparse.Namespace) -> dict[str, Callable[[np.ndarray], object]]:
    import onnxruntime as ort

    def variant(level: Any, threads: int) -> Callable[[np.ndarray], object]:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
        return lambda batch: session.run(None, {"image": batch})

    level = ort.GraphOptimizationLevel
    return {"onnx, basic graph optimisations": variant(level.ORT_ENABLE_BASIC, args.threads),
            "onnx, all graph optimisations (onnx backend)": variant(level.ORT_ENABLE_ALL,
                                                                    args.threads),
            "onnx, all, 1 thread": variant(level.ORT_ENABLE_ALL, 1)}


WORKERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "ablation_torch": lambda args: worker_ablation(args, "torch"),
    "ablation_onnx": lambda args: worker_ablation(args, "onnx"),
    "prepare": worker_prepare,
    "torch": worker_torch,
    "onnx": worker_onnx,
    "densenet121": lambda args: worker_baseline(args, "densenet121"),
    "resnet50": lambda args: worker_baseline(args, "resnet50"),
    "decode": worker_decode,
    "end_to_end": worker_end_to_end,
    "http_client": worker_http_client,
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
    b32 = {k: results[k]["batch32_images_per_s"]
           for k in ("torch", "onnx", "densenet121", "resnet50")}
    e2e = results["end_to_end"]
    model_p50 = e2e["model_p50_ms"]  # measured interleaved with the requests
    return {
        "onnx_vs_densenet121_batch32": ratio(b32["onnx"], b32["densenet121"]),
        "torch_vs_densenet121_batch32": ratio(b32["torch"], b32["densenet121"]),
        "onnx_vs_resnet50_batch32": ratio(b32["onnx"], b32["resnet50"]),
        "onnx_vs_torch_batch32": ratio(b32["onnx"], b32["torch"]),
        "http_vs_model_p50_batch1": ratio(e2e.get("http_shared_jpeg_p50_ms"), model_p50),
        "http_large_jpeg_vs_model_p50_batch1": ratio(e2e.get("http_large_jpeg_p50_ms"),
                                                     model_p50),
        "http_raw_vs_model_p50_batch1": ratio(e2e.get("http_raw_shared_jpeg_p50_ms"),
                                              model_p50),
        "http_floor_vs_model_p50_batch1": ratio(e2e.get("http_floor_shared_jpeg_p50_ms"),
                                                model_p50),
        "http_inprocess_raw_vs_model_p50_batch1": ratio(
            e2e.get("http_inprocess_raw_shared_jpeg_p50_ms"), model_p50),
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
    decode, e2e = results["decode"], results["end_to_end"]
    lines += ["", "| step | p50 (ms) | p95 (ms) |", "|---|---:|---:|",
              f"| (e) decode + preprocess, {decode['width']}x{decode['height']} JPEG "
              f"({decode['jpeg_kb']:.0f} KB), half-scale luminance | {decode['p50_ms']:.1f} | "
              f"{decode['p95_ms']:.1f} |",
              f"| (e') the same, full-size decode | {decode['full_decode_p50_ms']:.1f} | |",
              f"| the model alone, batch 1 (ONNX; interleaved with the rows below) | "
              f"{e2e['model_p50_ms']:.1f} | {e2e['model_p95_ms']:.1f} |"]
    for name, label in (("shared_jpeg", "shared 224 px JPEG"),
                        ("large_jpeg", f"{decode['width']} px JPEG")):
        for step, what in (("predictor", "Predictor.predict"),
                           ("http", "POST /api/v1/predict, multipart form (loopback HTTP, "
                                    "client in its own process)"),
                           ("http_raw", "POST /api/v1/predict, image as the body"),
                           ("http_floor", "POST to a route that only reads the body "
                                          "(the HTTP layer alone)"),
                           ("http_inprocess_raw", "POST /api/v1/predict, image as the body, "
                                                  "http.client in the server's process")):
            if f"{step}_{name}_p50_ms" in e2e:
                lines.append(f"| {what}, {label} (ONNX) | {e2e[f'{step}_{name}_p50_ms']:.1f} "
                             f"| {e2e[f'{step}_{name}_p95_ms']:.1f} |")
    parity = report["parity"]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {key} | {value if value is not None else 'n/a'} |"
              for key, value in report["ratios"].items()]
    if "ablation" in results:
        lines += ["", "| the model, one setting changed | latency p50 (ms) | "
                  "images/s, batch 32 |", "|---|---:|---:|"]
        lines += [f"| {name} | {v['latency_p50_ms']:.1f} | {v['batch32_images_per_s']:.1f} |"
                  for name, v in results["ablation"]["variants"].items()]
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
        *[(f"POST /api/v1/predict ({way}) p50 <= 1.5x model p50 at batch 1",
           ratios[key] is not None and ratios[key] <= TARGET_END_TO_END_VS_MODEL,
           f"{ratios[key]}x")
          for way, key in (("multipart", "http_vs_model_p50_batch1"),
                           ("image as the body", "http_raw_vs_model_p50_batch1"))],
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
    parser.add_argument("--ablation", action="store_true",
                        help="also time each setting of the model separately (slower)")
    parser.add_argument("--quick", action="store_true",
                        help="few repeats: checks that the script works, figures are rough")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--onnx", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.singles, args.batches, args.warmup, args.parity_images = 10, 2, 2, 16
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    from pneumoscan.modelfile import resolve_model_paths

    args.model = resolve_model_paths(args.model)[0]  # fails early, with the reason
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
        results["decode"] = run_worker("decode", args)
        results["end_to_end"] = run_worker("end_to_end", args, onnx=onnx)
        if args.ablation:
            variants = {**run_worker("ablation_torch", args)["variants"],
                        **run_worker("ablation_onnx", args, onnx=onnx)["variants"]}
            results["ablation"] = {"variants": variants}
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
