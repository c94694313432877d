"""Whether ``torchrun`` started this process as one of several: read from the environment.

Asked by ``pneumoscan predict`` (which must run without PyTorch) before it decides to shard;
everything else about process groups is in :mod:`pneumoscan.fitting.distributed`.
"""

from __future__ import annotations

import os


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1
