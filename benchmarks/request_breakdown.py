"""What a ``POST /api/v1/predict`` adds to the model, and where the time goes inside it.

The server is the application ``pneumoscan serve`` runs (``create_app_from_environment``
under uvicorn, ONNX backend), started by :func:`serving.running_server` in a process of
its own with a timer around each step of the request path (the functions the server
calls are wrapped). The client, in this process, sends ``--requests`` requests one at a
time over one keep-alive connection, alternating the image as the body and as a
multipart form; it speaks HTTP/1.1 over a raw socket, without a client library, so the
round trip is the server's and the loopback's (what a load tester such as wrk measures).

The figure the issue sets a target for is the **request overhead**: the p50 round trip
minus the p50 of the model alone (ONNX Runtime's ``run``, timed in the same requests), for
a 224 px JPEG, both from this one run. Target: at most 3.5 ms.

Usage (from the repository root, after ``make install``):

    .venv/bin/python benchmarks/request_breakdown.py [--requests 400] [--model PATH]
        [--image PATH] [--data ../shared/data/chest_xray]

The wrappers themselves add about a microsecond per step.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import socket
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving import running_server  # beside this script, which Python puts on the path

HERE = Path(__file__).resolve().parent

DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "chest_xray"
TARGET_OVERHEAD_MS = 3.5
BOUNDARY = "pneumoscan-benchmark"
MODEL_STEP = "the model (ONNX Runtime)"
APP_STEP = "the web application (ASGI)"

#: (module, attribute path, label, depth): what is timed, and how it nests.
STEPS = [
    ("pneumoscan.server.routes", "receive_upload", "read the upload", 1),
    ("pneumoscan.server.routes", "run_in_threadpool", "on a worker thread (hop + work)", 1),
    ("pneumoscan.server.routes", "predict_bytes", "decode, predict, render", 2),
    ("pneumoscan.server.service", "decode_upload", "decode the JPEG", 3),
    ("pneumoscan.predictor", "resize_all", "resize to the model's size", 3),
    ("pneumoscan.predictor", "normalize", "equalise and normalise", 3),
    ("pneumoscan.onnx_backend", "OnnxBackend.run", MODEL_STEP, 3),
    ("pneumoscan.predictor", "decide", "calibrated probabilities and decision", 3),
    ("pneumoscan.predictor", "assess_scope", "scope check", 3),
    ("pneumoscan.server.service", "render", "the JSON fields", 3),
]


# ----------------------------------------------------------------------------- server


def _timed(function: Callable[..., Any], times: list[float]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(function):
        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                times.append(time.perf_counter() - started)
        return timed_async

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - started)
    return timed


def serve(args: argparse.Namespace) -> None:
    """The server side: wrap the steps and serve as ``pneumoscan serve`` does until SIGTERM;
    the timings go to ``--timings`` as the application shuts down."""
    import uvicorn
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from pneumoscan.cli.console import configure_logging
    from pneumoscan.server.app import create_app_from_environment

    times: dict[str, list[float]] = defaultdict(list)
    for module, attribute, label, _ in STEPS:
        try:  # a step renamed or gone (or older code on PYTHONPATH, for an A/B) is skipped
            owner: Any = importlib.import_module(module)
            *path, name = attribute.split(".")
            for part in path:
                owner = getattr(owner, part)
            setattr(owner, name, _timed(getattr(owner, name), times[label]))
        except (ImportError, AttributeError):
            continue

    def dump_on_shutdown(send: Send) -> Send:
        async def dumping_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                Path(args.timings).write_text(json.dumps(times))
            await send(message)
        return dumping_send

    class Timed:  # the whole ASGI application, from the request to its last byte out
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":  # write the timings as the server stops
                await self.app(scope, receive, dump_on_shutdown(send))
                return
            if scope["method"] != "POST":
                await self.app(scope, receive, send)
                return
            started = time.perf_counter()

            async def timed_send(message: Message) -> None:
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    times[APP_STEP].append(time.perf_counter() - started)

            await self.app(scope, receive, timed_send)

    configure_logging()
    uvicorn.run(lambda: Timed(create_app_from_environment()), factory=True, host=args.host,
                port=args.port, log_level="warning", log_config=None)


# ----------------------------------------------------------------------------- client


def multipart(data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"xray.jpeg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() \
        + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def request_bytes(body: bytes, content_type: str) -> bytes:
    return (f"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            f"{content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def read_response(connection: socket.socket) -> int:
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


def send_requests(port: int, image: bytes, count: int) -> dict[str, list[float]]:
    """Round trips in seconds, by way of sending the image, alternating."""
    ways = {"image as the body": request_bytes(image, "image/jpeg"),
            "multipart form": request_bytes(multipart(image),
                                            f"multipart/form-data; boundary={BOUNDARY}")}
    round_trips: dict[str, list[float]] = {way: [] for way in ways}
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count):
            way = list(ways)[i % len(ways)]
            started = time.perf_counter()
            connection.sendall(ways[way])
            status = read_response(connection)
            round_trips[way].append(time.perf_counter() - started)
            if status != 200:
                raise SystemExit(f"the server answered {status}")
    return round_trips


def find_image(args: argparse.Namespace) -> Path:
    if args.image is not None:
        return Path(args.image)
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no folder of X-rays; pass --data or --image")
    return min(args.data.rglob("*.jpeg"))


def report(image: Path, times: dict[str, list[float]], round_trips: dict[str, list[float]],
           warmup: int) -> str:
    from PIL import Image

    def p50(values: list[float], skip: int = warmup) -> float:
        return statistics.median(values[skip:]) * 1000.0

    width, height = Image.open(image).size
    model = p50(times[MODEL_STEP])
    body = p50(round_trips["image as the body"], warmup // 2)
    lines = [f"{sum(map(len, round_trips.values()))} requests of {image.name} "
             f"({width}x{height} JPEG, {image.stat().st_size / 1024:.0f} KB), alternately "
             f"as the body and as a form; medians after {warmup} warm-up requests", "",
             "| step | p50 (ms) | of the round trip (body) |", "|---|---:|---:|"]
    rows = [(f"round trip, {way}, as the client sees it", p50(values, warmup // 2), 0)
            for way, values in round_trips.items()]
    rows += [(label, p50(times[label]), depth)
             for label, depth in [(APP_STEP, 1)] + [(s[2], s[3]) for s in STEPS]
             if len(times.get(label, [])) > warmup]
    lines += [f"| {'. ' * depth}{label} | {value:.3f} | {value / body:.0%} |"
              for label, value, depth in rows]
    lines.append("")
    for way, values in round_trips.items():
        overhead = p50(values, warmup // 2) - model
        verdict = "PASS" if overhead <= TARGET_OVERHEAD_MS else "FAIL"
        lines.append(f"{verdict}  request overhead, {way}: {overhead:.2f} ms "
                     f"(round trip p50 {p50(values, warmup // 2):.2f} - model p50 {model:.2f};"
                     f" target <= {TARGET_OVERHEAD_MS} ms)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder or .safetensors file (default: the shipped model)")
    parser.add_argument("--image", type=Path, default=None,
                        help="the JPEG to send (default: the first one under --data)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder of real X-rays (default: ../shared/data/chest_xray)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timings", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve(args)
        return
    import tempfile

    image = find_image(args)
    env = {"PNEUMOSCAN_BACKEND": "onnx"}
    if args.model is not None:
        env["PNEUMOSCAN_MODEL"] = str(args.model)
    with tempfile.TemporaryDirectory() as workdir:
        timings = Path(workdir) / "timings.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--serve",
                   "--timings", str(timings)]
        with running_server(command, env={**os.environ, **env}) as server:
            round_trips = send_requests(server.port, image.read_bytes(), args.requests)
        times = json.loads(timings.read_text())
    print(report(image, times, round_trips, warmup=min(40, args.requests // 10)))


if __name__ == "__main__":
    main()
