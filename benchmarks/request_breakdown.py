"""Where one ``POST /api/v1/predict`` spends its time, step by step, inside the server.

Serves the web app (ONNX backend) from this process, as ``bench_inference.py`` does, sends
``--requests`` requests from a client in its own process (``bench_inference.py``'s
``http_client`` worker: the image as the body, one keep-alive connection), and times each
step of the request path by wrapping the functions the server calls. Every figure is a
median over the requests, measured where the server runs it, right after the previous
request's model run (caches as cold as they are in service, unlike a tight loop).

Usage (from the repository root, after ``make install``):

    .venv/bin/python benchmarks/request_breakdown.py [--requests 400] [--model PATH]
        [--data ../shared/data/chest_xray]

The wrappers themselves add about a microsecond per step.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "chest_xray"

#: The fast path and the route each hold their own reference to these two.
SERVER = "pneumoscan.server.routes pneumoscan.server.fast_path"
#: (modules, function, label, depth): what is timed, and how it nests (for the indent).
STEPS = [
    (SERVER, "is_light", "read the JPEG header (inline or thread?)", 1),
    (SERVER, "predict_bytes", "decode, predict, render", 1),
    ("pneumoscan.server.routes", "decode_upload", "decode the JPEG", 2),
    ("pneumoscan.predictor", "resize", "resize to the model's size (Pillow)", 2),
    ("pneumoscan.predictor", "normalize", "equalise and normalise", 2),
    ("backend", "run", "the model (ONNX Runtime)", 2),
    ("pneumoscan.predictor", "apply_temperature", "calibrated probabilities", 2),
    ("pneumoscan.predictor", "assess_scope", "scope check", 2),
    ("pneumoscan.scope", "check_image", "image statistics", 3),
    ("pneumoscan.scope", "check_thumbnail", "layout thumbnail distance", 3),
    ("pneumoscan.scope", "check_features", "feature distance", 3),
    ("pneumoscan.server.routes", "render", "the JSON fields", 2),
]


def _wrap(owner: Any, name: str, times: list[float]) -> None:
    function: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - started)

    setattr(owner, name, timed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder or .safetensors file (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder of real X-rays (default: ../shared/data/chest_xray)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no folder of X-rays; pass --data")

    import importlib

    import uvicorn
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from pneumoscan.export import sample_images
    from pneumoscan.predictor import Predictor
    from pneumoscan.server import ServerSettings, create_app

    predictor = Predictor.load(args.model, backend="onnx")
    times: dict[str, list[float]] = defaultdict(list)
    for modules, name, label, _ in STEPS:
        for module in modules.split():
            owner = predictor.backend if module == "backend" \
                else importlib.import_module(module)
            _wrap(owner, name, times[label])

    class Timed:  # the whole ASGI application, from the request to its last byte out
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            started = time.perf_counter()

            async def timed_send(message: Message) -> None:
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    times["the web application (ASGI)"].append(time.perf_counter() - started)

            await self.app(scope, receive, timed_send)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = Timed(create_app(ServerSettings(backend="onnx"), predictor=predictor))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    image = sample_images(args.data, 1)[0]
    client = subprocess.Popen([sys.executable, str(HERE / "bench_inference.py"), "--worker",
                               "http_client", "--port", str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdin is not None and client.stdout is not None
    round_trips = []
    for _ in range(args.requests):
        client.stdin.write(f"/api/v1/predict\timage/jpeg\t{image}\n")
        client.stdin.flush()
        status, seconds = client.stdout.readline().split()
        if status != "200":
            raise SystemExit(f"the server answered {status}")
        round_trips.append(float(seconds))
    client.stdin.close()
    client.wait(timeout=30)
    server.should_exit = True

    skip = min(40, args.requests // 10)  # warm-up

    def p50(values: list[float]) -> float:
        return statistics.median(values[skip:]) * 1000.0

    total, model = p50(round_trips), p50(times["the model (ONNX Runtime)"])
    print(f"\n{args.requests} requests of {image.name} ({image.stat().st_size / 1024:.0f} KB) "
          f"as the body; medians after {skip} warm-up requests\n")
    print("| step | p50 (ms) | of the round trip |\n|---|---:|---:|")
    rows = [("round trip, as the client sees it", total, 0),
            ("the web application (ASGI)", p50(times["the web application (ASGI)"]), 1)]
    rows += [(label, p50(times[label]), depth) for _, _, label, depth in STEPS]
    for label, value, depth in rows:
        print(f"| {'. ' * depth}{label} | {value:.3f} | {value / total:.0%} |")
    print(f"\nround trip / model: {total / model:.2f}x; everything but the model: "
          f"{total - model:.2f} ms")


if __name__ == "__main__":
    main()
