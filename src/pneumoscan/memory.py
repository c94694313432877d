"""Giving freed memory back to the system, and keeping the C heap from spreading.

glibc keeps what a thread frees in that thread's arena for reuse; after a 49 MP film
decoded on two worker threads, a server idled at 370 MB instead of 150 MB. ``malloc_trim``
returns the free pages of every arena. It costs a few milliseconds, so the services call
it only after images large enough to matter (:data:`LARGE_IMAGE_PIXELS`), and the DICOM
node after each image.

Trimming cannot return a page that still holds one live block, and glibc gives each new
thread an arena of its own, up to 8 per CPU. The DICOM node answers every association on
a new thread, so its heap spread over 16 arenas, each partly used: it grew from 357 to
557 MB at rest over the attack run (issue 25), and by 130 MB over 30 images sent one
after another. With the services' arenas limited to :data:`SERVICE_MALLOC_ARENAS`
(:func:`limit_malloc_arenas`, at their start) it stays within 11 MB over those 30 images.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache
from typing import Any

logger = logging.getLogger(__name__)

#: Decoded images at least this large (16 MP: beyond a 4,000 x 4,000 film) are followed
#: by :func:`release_free_memory` in the web server.
LARGE_IMAGE_PIXELS = 16_000_000


#: glibc arenas a service's threads share (``M_ARENA_MAX``): the main one and one more.
SERVICE_MALLOC_ARENAS = 2
#: glibc's ``mallopt`` parameter number of ``M_ARENA_MAX`` (malloc.h).
_M_ARENA_MAX = -8


@cache
def _glibc_function(name: str) -> Any | None:
    """A function of glibc's allocator (returning int), or None on other C libraries
    (musl, macOS, Windows)."""
    library = ctypes.util.find_library("c")
    try:
        function = getattr(ctypes.CDLL(library), name) if library else None
    except (OSError, AttributeError):
        function = None
    if function is not None:
        function.restype = ctypes.c_int
    return function


def _malloc_trim() -> Any | None:
    """glibc's ``malloc_trim``, or None."""
    trim = _glibc_function("malloc_trim")
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
    return trim


def limit_malloc_arenas(count: int = SERVICE_MALLOC_ARENAS) -> None:
    """Let every thread of this process share ``count`` glibc arenas from now on (no-op
    without glibc). Called once at a service's start, before its threads allocate."""
    mallopt = _glibc_function("mallopt")
    if mallopt is not None:
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        if not mallopt(_M_ARENA_MAX, count):
            logger.warning("could not limit the C heap to %d arenas", count)


def release_free_memory() -> None:
    """Return the free pages of the C heap to the system (no-op without glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
