"""The C heap of a service: arenas limited, free pages given back (glibc only)."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or "libc" not in (ctypes.util.find_library("c") or ""),
    reason="glibc's allocator only")

# Eight threads allocate and free at once, then glibc's malloc_stats() writes one
# "Arena N:" block per arena to stderr.
THREADS = """
import ctypes, sys, threading
from pneumoscan.memory import limit_malloc_arenas, release_free_memory
if sys.argv[1] == "limited":
    limit_malloc_arenas(2)
start = threading.Barrier(8)
def work():
    start.wait()
    for _ in range(200):
        blocks = [bytearray(64 * 1024) for _ in range(8)]
        del blocks
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
release_free_memory()
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", THREADS, mode], capture_output=True,
                          text=True, timeout=60, check=True)
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def test_threads_share_the_limited_arenas() -> None:
    assert arenas("limited") <= 2
    assert arenas("default") > 2  # what the limit prevents: an arena per thread
