"""Data-parallel training over several processes, started by ``torchrun`` (PyTorch DDP); no launcher of our own.

``torchrun --nproc_per_node=2 -m vae_cli.cli dataset=fashion_mnist`` (or ``torchrun ... $(which vae-train) ...``)
starts one ``vae-train`` per process with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set. Each process:

- joins the process group (``gloo`` on CPU, ``nccl`` on CUDA, one GPU per process: ``cuda:LOCAL_RANK``);
- trains on its own shard of every epoch's seeded permutation (:func:`shard_order`), ``trainer.batch_size``
  images per process and step (so the global batch is ``batch_size * world_size``), with DDP averaging the
  gradients;
- agrees with the others, once per step, on what only one of them may have seen (a NaN/Inf loss, a Ctrl-C), so
  every rank skips, rolls back or stops at the same step instead of waiting forever for a peer that left.

Only rank 0 writes the run directory (TensorBoard, checkpoints, metrics.json, the final test evaluation); the
other ranks write their checkpoints (used for ``nan_policy=rollback``) into a scratch folder that is removed when
they exit. Multi-node runs are plain torchrun too (``--nnodes``, ``--rdzv-endpoint``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a torchrun job; ``world_size == 1`` is an ordinary single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment(environ: dict[str, str] | None = None) -> Distributed:
    """The torchrun variables of this process (all absent: a single-process run)."""
    env = os.environ if environ is None else environ
    try:
        return Distributed(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        return Distributed()


def start(dist: Distributed, device: torch.device) -> torch.device:
    """Join the process group; returns this process's device (its own GPU under CUDA)."""
    if not dist.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        # torchrun provides MASTER_ADDR/MASTER_PORT; device_id lets NCCL bind this rank's GPU eagerly.
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return device


def stop(dist: Distributed) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def shard_order(order: torch.Tensor, dist: Distributed) -> torch.Tensor:
    """This rank's part of a global order: every ``world_size``-th index from ``rank``, after padding the order
    with its own first indices to a multiple of ``world_size`` (as ``DistributedSampler`` does), so every rank
    takes the same number of steps: DDP needs each rank in every gradient all-reduce."""
    if not dist.enabled:
        return order
    pad = (-len(order)) % dist.world_size
    if pad:
        order = torch.cat([order, order[:pad]])
    return order[dist.rank :: dist.world_size]


def shard_size(n: int, dist: Distributed) -> int:
    return -(-n // dist.world_size)


def any_rank(flag: bool, dist: Distributed, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (a collective: every rank must call it at the same point)."""
    if not dist.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_ranks(t: torch.Tensor, dist: Distributed) -> torch.Tensor:
    """The elementwise sum of ``t`` over all ranks (a collective), as a new tensor."""
    if not dist.enabled:
        return t
    total = t.clone()
    torch_dist.all_reduce(total, op=torch_dist.ReduceOp.SUM)
    return total
