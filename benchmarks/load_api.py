"""Bounded load test of the JSON API: N requests, C at a time, real X-rays.

Starts ``pneumoscan serve`` on 127.0.0.1 (or targets ``--url``), posts shared chest X-rays
to /api/v1/predict, and prints throughput, latency percentiles, the error count and the
server's memory before and after. Every request must succeed: errors are counted, and the
exit status is 1 when there is any.

    python benchmarks/load_api.py --requests 500 --concurrency 16
    python benchmarks/load_api.py --model runs/first --heatmap
    python benchmarks/load_api.py --url http://127.0.0.1:8000 --server-pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from serving import SERVE, memory_mb, running_server  # beside this script, on Python's path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "chest_xray" / "train"


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)  # client-side, successes only
    server_ms: list[float] = field(default_factory=list)  # the server's own elapsed_ms
    errors: dict[str, int] = field(default_factory=dict)  # "status 500" / exception -> count
    wall_s: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def pick_images(folder: Path, count: int) -> list[tuple[str, bytes]]:
    """``count`` X-rays, alternating NORMAL and PNEUMONIA, read once into memory."""
    classes = [sorted((folder / name).glob("*.jpeg")) for name in ("NORMAL", "PNEUMONIA")]
    if not all(classes):
        raise SystemExit(f"no X-rays under {folder}/{{NORMAL,PNEUMONIA}}; pass --images")
    chosen = [paths[i % len(paths)] for i in range(count // 2) for paths in classes]
    return [(p.name, p.read_bytes()) for p in chosen]


async def run_load(url: str, images: list[tuple[str, bytes]], requests: int,
                   concurrency: int, heatmap: bool, max_seconds: float) -> LoadResult:
    result = LoadResult()
    endpoint = f"{url}/api/v1/predict" + ("?heatmap=true" if heatmap else "")
    next_index = 0
    deadline = time.monotonic() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < requests and time.monotonic() < deadline:
            name, data = images[next_index % len(images)]
            next_index += 1
            started = time.perf_counter()
            try:
                response = await client.post(endpoint, files={"file": (name, data)})
            except httpx.HTTPError as exc:
                key = type(exc).__name__
                result.errors[key] = result.errors.get(key, 0) + 1
                continue
            if response.status_code != 200:
                key = f"status {response.status_code}"
                result.errors[key] = result.errors.get(key, 0) + 1
                continue
            result.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            result.server_ms.append(float(response.json()["elapsed_ms"]))

    limits = httpx.Limits(max_connections=concurrency)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result


def report(result: LoadResult, requests: int, concurrency: int, heatmap: bool,
           memory_before: dict[str, float], memory_after: dict[str, float],
           health: dict[str, object]) -> str:
    done = len(result.latencies_ms)
    p = percentile
    lines = [
        f"model {health.get('model')} ({health.get('backend')} backend), "
        f"{platform.machine()}, {os.cpu_count()} CPUs; heatmap={'on' if heatmap else 'off'}",
        f"requests      {done + result.error_count} sent of {requests}, "
        f"{concurrency} concurrent, {result.wall_s:.1f} s",
        f"throughput    {done / result.wall_s:.2f} req/s" if result.wall_s else "",
        f"latency (ms)  p50 {p(result.latencies_ms, 50):.0f}  p95 {p(result.latencies_ms, 95):.0f}"
        f"  p99 {p(result.latencies_ms, 99):.0f}  max {max(result.latencies_ms, default=0):.0f}"
        "  (client)",
        f"server time   p50 {p(result.server_ms, 50):.0f}  p95 {p(result.server_ms, 95):.0f} ms "
        "(elapsed_ms, queueing included)",
        f"errors        {result.error_count} {result.errors or ''}".rstrip(),
    ]
    if memory_before and memory_after:
        lines.append(f"server memory RSS {memory_before['VmRSS']:.0f} MB before, "
                     f"{memory_after['VmRSS']:.0f} MB after, peak {memory_after['VmHWM']:.0f} MB")
    return "\n".join(line for line in lines if line)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running server (default: start one)")
    parser.add_argument("--server-pid", type=int, help="with --url: its pid, for memory")
    parser.add_argument("--model", help="model folder or .safetensors (default: shipped)")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server-concurrency", type=int,
                        help="PNEUMOSCAN_MAX_CONCURRENCY for a server started here")
    parser.add_argument("--heatmap", action="store_true", help="ask for the heat-map PNG")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="folder with NORMAL/ and PNEUMONIA/ JPEGs")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="stop sending new requests after this long")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = pick_images(args.images, min(args.requests, 64))
    with ExitStack() as stack:
        if args.url:
            url, pid = args.url.rstrip("/"), args.server_pid
        else:
            command = [*SERVE, "--backend", args.backend]
            if args.model:
                command += ["--model", args.model]
            env = {} if args.server_concurrency is None else {
                "PNEUMOSCAN_MAX_CONCURRENCY": str(args.server_concurrency)}
            server = stack.enter_context(running_server(command, env=env))
            url, pid = server.url, server.pid
        health = httpx.get(url + "/api/v1/health", timeout=10).json()
        memory_before = memory_mb(pid) if pid else {}
        result = asyncio.run(run_load(url, images, args.requests, args.concurrency,
                                      args.heatmap, args.max_seconds))
        memory_after = memory_mb(pid) if pid else {}
        alive = httpx.get(url + "/api/v1/health", timeout=10).status_code == 200
    print(report(result, args.requests, args.concurrency, args.heatmap, memory_before,
                 memory_after, health))
    print(f"server healthy afterwards: {alive}")
    return 1 if result.error_count or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
