"""torchrun/DDP plumbing: who am I, which device, how to sum metrics across ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup() -> DistInfo:
    """Initialise the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed 48x48 batches: let cuDNN pick the fastest kernels
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, device)


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(info: DistInfo, *values: float) -> list[float]:
    """Sum scalars over ranks (identity in a single process)."""
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    if info.enabled:
        dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(info: DistInfo, flag: bool) -> bool:
    """Rank 0's decision (early stopping), seen by every rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([int(flag)], device=info.device)
    dist.broadcast(t, 0)
    return bool(t.item())


def broadcast_buffers(info: DistInfo, module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics drift apart per data shard)."""
    if info.enabled:
        for b in module.buffers():
            dist.broadcast(b, 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
