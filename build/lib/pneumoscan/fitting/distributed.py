"""Several processes, one model: the process group behind ``torchrun`` training and prediction.

``torchrun --nproc-per-node N -m pneumoscan train ...`` (or ``pneumoscan train --devices N``)
starts one process per device and tells each its place through environment variables:
``WORLD_SIZE`` (processes in all), ``RANK`` (this one's number, 0 first) and ``LOCAL_RANK``
(its number on this machine, which picks its GPU). :func:`process_group` joins them (gloo on
the CPU, NCCL on CUDA). Without torchrun every helper here is the single process: rank 0 of
1, barriers and reductions do nothing, so callers use them unconditionally.

PyTorch is imported when a helper needs it, not with this module. Whether torchrun started
this process is read by :func:`pneumoscan.torchrun.launched_by_torchrun` (in the runtime core).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pneumoscan.torchrun import launched_by_torchrun

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

#: What ``--device`` accepts: "auto" is CUDA when a GPU is visible, else the CPU.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def world_size() -> int:
    """Processes in the group (1 without one)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1`` (0 without a group)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def is_main_process() -> bool:
    """Rank 0: the one process that writes files and logs progress."""
    return rank() == 0


def select_device(device: str | torch.device = "auto", local_rank: int | None = None,
                  ) -> torch.device:
    """Resolve ``"auto" | "cpu" | "cuda"`` to a device; CUDA gets GPU ``local_rank``.

    Args:
        device: a name from :data:`DEVICE_CHOICES` or a ``torch.device`` (returned as is).
        local_rank: which GPU on this machine (default: ``$LOCAL_RANK``, else 0).
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICE_CHOICES}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but PyTorch sees no CUDA GPU; use "
                         "--device cpu (or auto)")
    index = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
    if index >= torch.cuda.device_count():
        raise ValueError(f"process with local rank {index} needs GPU {index}, but only "
                         f"{torch.cuda.device_count()} are visible; start at most that many "
                         "processes per node")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


@contextlib.contextmanager
def process_group(device: str | torch.device = "auto") -> Iterator[torch.device]:
    """Join torchrun's process group for the duration; yield this process's device.

    A no-op (beyond choosing the device) for a single process, or when a caller already
    joined: the group is left only by whoever created it. Join once per process, at its
    entry point: joining anew after leaving can hang, as the rendezvous store still holds
    the first group's keys.
    """
    import torch.distributed as dist

    chosen = select_device(device)
    created = launched_by_torchrun() and not dist.is_initialized()
    if created:
        on_gpu = chosen.type == "cuda"
        dist.init_process_group("nccl" if on_gpu else "gloo",
                                device_id=chosen if on_gpu else None)
        logger.debug("rank %d of %d joined (%s, %s)", rank(), world_size(),
                     dist.get_backend(), chosen)
    try:
        yield chosen
    finally:
        if created:
            dist.destroy_process_group()


def _collective_device() -> torch.device:
    import torch
    import torch.distributed as dist

    # NCCL moves only CUDA tensors; gloo only CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every process gets here."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_mean(value: float) -> float:
    """The mean of ``value`` over all processes."""
    if world_size() == 1:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return float(tensor.item()) / world_size()


def all_gather_objects(value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order."""
    if world_size() == 1:
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def gather_strided(part: np.ndarray, total: int) -> np.ndarray:
    """Reassemble rows computed as ``rows[rank::world_size]`` on each process, everywhere."""
    parts = all_gather_objects(part)
    if len(parts) == 1:
        return part
    whole = np.empty((total, *part.shape[1:]), dtype=part.dtype)
    for index, rows in enumerate(parts):
        whole[index::len(parts)] = rows
    return whole


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (say, to fill a cache); the others run it after."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several processes, else itself.

    Keep the bare model for checkpoints (no ``module.`` prefix in its keys) and for
    evaluation on one rank (DDP's forward is a collective every rank must join).
    """
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process.

    DDP broadcasts them before each forward pass, so after the last step of an epoch each
    rank holds statistics updated by its own share of the batch.
    """
    if world_size() == 1:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """A SHA-256 of a state dict's names, dtypes, shapes and bytes: equal iff identical."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_in_sync(model: nn.Module) -> str:
    """Check that every process holds the same weights; return their :func:`state_digest`.

    Raises:
        RuntimeError: ranks diverged, which is a bug (DDP keeps parameters equal).
    """
    digests = all_gather_objects(state_digest(model.state_dict()))
    if len(set(digests)) != 1:
        raise RuntimeError(f"model weights differ across processes: {digests}")
    return str(digests[0])


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on CUDA (bfloat16, where the GPU has it); nothing on the CPU.

    bfloat16 keeps float32's range, so no gradient scaler is needed. GPUs without it
    (before Ampere) train in float32.
    """
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class ProcessFailedError(RuntimeError):
    """A process started by :func:`launch_local` failed; its own message came before."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def launch_local(ranks: int, entrypoint: Callable[..., Any], *args: Any) -> None:
    """Start ``ranks`` local processes, as ``torchrun --standalone --nproc-per-node``
    would, each running ``entrypoint(*args)`` with torchrun's environment variables set.

    ``entrypoint`` must be importable at module level (processes are spawned).

    Raises:
        ProcessFailedError: a process failed; the others were stopped.
    """
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if ranks < 1:
        raise ValueError(f"need at least 1 process, got {ranks}")
    # Split the cores among the processes, as torchrun does (it sets OMP_NUM_THREADS=1).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // ranks)))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=ranks,
                          run_id=str(uuid.uuid4()), rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0)
    try:
        elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        failures = {rank: failure.exitcode for rank, failure in exc.failures.items()}
        raise ProcessFailedError(f"process(es) failed, exit code by rank: {failures}",
                                 max(failures.values())) from None
