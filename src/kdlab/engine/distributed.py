"""DistributedDataParallel under `torchrun`: the process group and the few collectives kdlab uses.

Every helper works unchanged in a single process (rank 0 of 1, collectives are no-ops), so
the engine and commands call them unconditionally instead of branching on the launch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from kdlab.engine.settings import announced_world_size
from kdlab.errors import KdlabError


def rank() -> int:
    """This process's rank: the process group's, else what torchrun announced (0 alone)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in the job: the process group's size, else what torchrun announced (1 alone).

    Known before the group is joined, so the pre-flight checks can use it.
    """
    if dist.is_initialized():
        return dist.get_world_size()
    return announced_world_size()


def is_main() -> bool:
    """Rank 0: the only process that writes the run's files."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Join torchrun's process group for the block (env:// rendezvous), then leave it.

    CUDA tensors go through NCCL and CPU tensors through Gloo (`cpu:gloo,cuda:nccl`), so
    `trainer.device=cpu` works on a GPU machine too; each rank drives GPU `LOCAL_RANK`.
    """
    backend = "gloo"
    if local_rank() < torch.cuda.device_count():
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: under torchrun a CUDA device is GPU `LOCAL_RANK`."""
    if device.type != "cuda" or not dist.is_initialized():
        return device
    visible = torch.cuda.device_count()
    if local_rank() >= visible:
        raise KdlabError(
            f"torchrun started more processes on this node than its {visible} visible GPUs: "
            f"set --nproc_per_node={visible}, or trainer.device=cpu"
        )
    return torch.device("cuda", local_rank())


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over ranks (in place); the tensor itself in a single process."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_str(value: str) -> str:
    """Rank 0's `value` on every rank (what the other ranks pass is ignored)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def broadcast_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank: the model rank 0 saves."""
    if dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    """Wait for every rank, e.g. until rank 0 has written a checkpoint the others read."""
    if dist.is_initialized():
        dist.barrier()


def data_parallel(
    module: nn.Module, device: torch.device, trained: Sequence[torch.Tensor]
) -> nn.Module:
    """`module` under DDP when distributed (its gradients averaged over ranks), else itself.

    Parameters that require grad but are not `trained` (the rest of a student during a
    FitNet hint stage) get no gradient, which DDP must be told to look for.
    """
    if not dist.is_initialized():
        return module
    trained_ids = {id(p) for p in trained}
    unused = any(p.requires_grad and id(p) not in trained_ids for p in module.parameters())
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=unused,
    )
