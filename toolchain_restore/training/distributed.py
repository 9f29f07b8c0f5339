"""Processes started by ``torchrun``: which one this is, and keeping their weights equal.

Rank 0 alone writes files and prints (:class:`~toolchain_restore.training.run.Run`
asks :attr:`Distributed.is_main`; the jobs and commands, which write their weights and
print their summaries after training, ask :func:`is_main_process`); every process trains. Gradients are averaged
explicitly rather than through DistributedDataParallel, so that a task may call its model
any number of times per step (one call per tool, a chain of tools, a generator and a
discriminator).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Distributed", "is_main_process", "trainable", "broadcast_parameters", "average_gradients", "check_in_sync"]


@dataclass(frozen=True)
class Distributed:
    """This process's place among the processes of a run (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    active: bool = False
    """True when ``torchrun`` started more than one process."""

    @classmethod
    def from_env(cls) -> "Distributed":
        """Read ``torchrun``'s WORLD_SIZE, RANK and LOCAL_RANK."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")), True)

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    def setup(self, device: torch.device) -> torch.device:
        """Join the process group (NCCL on GPU, gloo on CPU); return this process's device:
        on CUDA, the GPU of its local rank."""
        if not self.active:
            return device
        import torch.distributed as tdist

        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not tdist.is_initialized():
            tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return device

    def barrier(self) -> None:
        """Wait for every process (no-op for one)."""
        if self.active:
            torch.distributed.barrier()


def is_main_process() -> bool:
    """Whether this process is rank 0 of the ``torchrun`` processes (or the only process):
    the one that writes the results and prints."""
    return Distributed.from_env().is_main


def trainable(model: nn.Module) -> list[torch.Tensor]:
    """The parameters that get gradients."""
    return [p for p in model.parameters() if p.requires_grad]


def broadcast_parameters(model: nn.Module) -> None:
    """Start every process from rank 0's weights."""
    import torch.distributed as tdist

    with torch.no_grad():
        for tensor in model.state_dict().values():
            tdist.broadcast(tensor, src=0)


def average_gradients(model: nn.Module, world_size: int) -> None:
    """Average the gradients of all trainable parameters over the processes, in one message."""
    import torch.distributed as tdist

    params = trainable(model)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    tdist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def check_in_sync(model: nn.Module) -> None:
    """Fail loudly if the processes' weights drifted apart."""
    import torch.distributed as tdist

    with torch.no_grad():
        total = torch.stack([p.double().sum() for p in trainable(model)]).sum().reshape(1)
        low, high = total.clone(), total.clone()
        tdist.all_reduce(low, op=tdist.ReduceOp.MIN)
        tdist.all_reduce(high, op=tdist.ReduceOp.MAX)
    if not torch.allclose(low, high, rtol=1e-9, atol=1e-9):
        raise RuntimeError(f"data-parallel processes ended with different weights ({low.item()} vs {high.item()})")
