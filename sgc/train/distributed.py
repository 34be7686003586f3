"""Process groups as torchrun sets them up, and reductions across ranks.

A single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) needs no process group: every helper here is then
a no-op, so the training loop calls them unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from sgc.errors import SgcError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands among the training processes.

    Attributes:
        rank: global rank, 0 in a single process.
        world_size: number of processes.
        local_rank: rank on this machine, which picks the GPU.
        device: the device this process computes on.
        backend: the process group's backend ("nccl" or "gloo"), None without a group.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SgcError(f"environment variable {name}={value!r} is not an integer") from None


def _resolve_device(device: str, local_rank: int) -> torch.device:
    """The device named by ``device`` ("auto", "cpu", "cuda" or "cuda:N") for the process of ``local_rank``.

    Raises:
        SgcError: CUDA asked for but unavailable, or a device string torch does not know.
    """
    if device == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise SgcError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SgcError(f"device {device!r} asked for, but this torch build or machine has no CUDA")
        if dev.index is None:
            # Plain "cuda" under torchrun means this process's own GPU, not GPU 0 for everybody.
            dev = torch.device("cuda", local_rank)
    return dev


def setup(device: str = "auto") -> DistInfo:
    """Pick this process's device and, under torchrun with several processes, join the process group.

    The group's backend is NCCL on CUDA and Gloo otherwise. An already initialised group is reused.

    Args:
        device: "auto" (this process's GPU when CUDA is available, else the CPU), "cpu", "cuda" or
            "cuda:N".

    Returns:
        This process's :class:`DistInfo`.

    Raises:
        SgcError: CUDA asked for but unavailable, or torchrun variables missing or malformed.
    """
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = _resolve_device(device, local_rank)
    if dev.type == "cuda":
        # NCCL collectives and broadcast_object_list run on the current device, so make it ours.
        torch.cuda.set_device(dev)
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, str(dist.get_backend()))
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistInfo(0, 1, local_rank, dev, None)
    rank = _env_int("RANK", -1)
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if rank < 0 or missing:
        raise SgcError(
            f"WORLD_SIZE={world_size} but {', '.join(missing) or 'RANK'} unset: launch with torchrun, "
            "or set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT"
        )
    if not dist.is_available():
        raise SgcError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, dev, backend)


def cleanup() -> None:
    """Destroy the process group, if there is one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _group_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place; unchanged in a single process.

    Returns:
        ``tensor`` itself, for chaining.
    """
    if _group_active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank; ``obj`` itself in a single process.

    Objects travel pickled between the ranks of one job, never from a file; keep them small.
    """
    if not _group_active():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
