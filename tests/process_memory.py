"""A process's resident memory, for the tests that bound it (Linux ``/proc``)."""

from __future__ import annotations

from pathlib import Path


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident memory (``VmRSS``) and its peak (``VmHWM``) of a process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values


def reset_peak(pid: int | str = "self") -> None:
    """Set the process's peak (``VmHWM``) to its resident memory now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (its worker processes, say), from ``/proc``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def tree_memory_mb(pid: int, key: str = "VmRSS") -> float:
    """``key`` (``VmRSS`` or ``VmHWM``) summed over a process and the processes it started
    (a service and its worker processes), MB."""
    return sum(memory_mb(p)[key] for p in [pid, *children(pid)])


def reset_tree_peak(pid: int) -> None:
    """:func:`reset_peak` for a process and the processes it started."""
    for process in [pid, *children(pid)]:
        reset_peak(process)
