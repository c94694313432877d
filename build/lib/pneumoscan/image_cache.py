"""Decoded, resized training images kept as one uint8 array file per data set and size.

Decoding 5,216 JPEGs takes longer than an epoch's worth of data loading should; the
cache turns it into one ``np.load``. The file name holds the data fingerprint and the
size, so a changed data set or size never reads a stale cache. ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pneumoscan.dataset import Sample
from pneumoscan.errors import ImageDecodeError, ImageTooLargeError
from pneumoscan.imaging import load_image
from pneumoscan.preprocessing import resize

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$PNEUMOSCAN_CACHE`` or ``~/.cache/pneumoscan``."""
    return Path(os.environ.get("PNEUMOSCAN_CACHE", Path.home() / ".cache" / "pneumoscan"))


def _cache_key(samples: Sequence[Sample], image_size: int) -> str:
    digest = hashlib.sha256()
    for s in samples:
        stat = s.path.stat()
        digest.update(f"{s.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return f"{digest.hexdigest()[:20]}_{image_size}px"


def load_resized(samples: Sequence[Sample], image_size: int, *, cache_dir: Path | None = None,
                 progress: Callable[[int], None] | None = None, use_cache: bool = True,
                 ) -> tuple[np.ndarray, list[int]]:
    """Decode and resize ``samples`` to ``(N, S, S)`` uint8, using the cache when present.

    With ``use_cache=False`` nothing is read from or written to disk (evaluation of data
    that is not ours to copy). Returns the pixels of the readable images and the indices
    (into ``samples``) of those that could not be read; those are logged and left out,
    never filled with grey.
    """
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    key = _cache_key(samples, image_size)
    pixels_path, bad_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.bad.npy"
    if use_cache and pixels_path.is_file() and bad_path.is_file():
        logger.info("image cache hit: %s", pixels_path)
        return (np.load(pixels_path, allow_pickle=False),
                [int(i) for i in np.load(bad_path, allow_pickle=False)])

    def read(index: int) -> np.ndarray | None:
        try:
            return resize(load_image(samples[index].path), image_size)
        except (ImageDecodeError, ImageTooLargeError) as exc:
            logger.warning("skipping unreadable image %s", exc)
            return None
        finally:
            if progress is not None:
                progress(1)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        decoded = list(pool.map(read, range(len(samples))))
    bad = [i for i, image in enumerate(decoded) if image is None]
    good = [image for image in decoded if image is not None]
    pixels = np.stack(good) if good else np.zeros((0, image_size, image_size), np.uint8)
    if not use_cache:
        return pixels, bad
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(pixels_path, pixels, allow_pickle=False)
        np.save(bad_path, np.array(bad, dtype=np.int64), allow_pickle=False)
    except OSError as exc:  # a read-only home must not stop training
        logger.warning("could not write the image cache at %s: %s", cache_dir, exc)
    return pixels, bad
