"""Sharding an epoch across torchrun processes, and the collectives that keep the ranks in step."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vae_cli.datasets import IndexBatches
from vae_cli.process.distributed import Distributed, from_environment, shard_order


def test_the_environment_torchrun_sets_is_read():
    assert from_environment({}) == Distributed(0, 1, 0)
    got = from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert got == Distributed(3, 4, 1) and got.enabled and not got.is_main


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (10, 3), (7, 4), (5, 1)])
def test_shards_cover_the_order_once_with_equal_sizes(n, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    shards = [shard_order(order, Distributed(r, world)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == -(-n // world)
    taken = torch.cat(shards)
    assert set(taken.tolist()) == set(range(n))  # everything, the padding repeating the first few only
    assert len(taken) - n == (-n) % world


def test_index_batches_of_two_ranks_together_make_one_epoch():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    ranks = [IndexBatches(images, 8, seed=5, dist=Distributed(r, 2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4  # 25 images per rank -> 4 batches each
    seen = [int(v * 255 + 0.5) for b in ranks for x, _ in b.epoch(1) for v in x.flatten().tolist()]
    assert sorted(seen) == list(range(50))
    again = [int(v * 255 + 0.5) for b in ranks for x, _ in b.epoch(1) for v in x.flatten().tolist()]
    assert again == seen  # the same (seed, epoch) gives every rank the same shard again (exact resume)


COLLECTIVES = """
import signal, sys, torch
from vae_cli.process.distributed import Distributed, any_rank, from_environment, start, stop, sum_over_ranks
from vae_cli.process.signals import StopSignal
from vae_cli.training.session import AgreedStop

dist = from_environment()
device = start(dist, torch.device("cpu"))
sys.stdout = open(f"{sys.argv[1]}/rank{dist.rank}.txt", "w")  # one file per rank: a shared pipe interleaves
print("RANK", dist.rank, "any_true", any_rank(dist.rank == 1, dist, device))
print("RANK", dist.rank, "any_false", any_rank(False, dist, device))
print("RANK", dist.rank, "sum", sum_over_ranks(torch.tensor([1.0, dist.rank]), dist).tolist())
flag = StopSignal()
agreed = AgreedStop(flag, dist, device)
print("RANK", dist.rank, "stop_none", agreed())
if dist.rank == 1:
    flag.received = signal.SIGINT
print("RANK", dist.rank, "stop_one", agreed() is not None)
every_third = AgreedStop(flag, dist, device, every=3)
print("RANK", dist.rank, "stop_every_third", [every_third() is not None for _ in range(6)])
stop(dist)
sys.stdout.close()
"""


def test_ranks_agree_on_what_only_one_of_them_saw(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for r in (0, 1) for line in (tmp_path / f"rank{r}.txt").read_text().splitlines()]
    for rank in (0, 1):
        assert f"RANK {rank} any_true True" in lines and f"RANK {rank} any_false False" in lines
        assert f"RANK {rank} sum [2.0, 1.0]" in lines
        assert f"RANK {rank} stop_none None" in lines and f"RANK {rank} stop_one True" in lines
        assert f"RANK {rank} stop_every_third [False, False, True, False, False, True]" in lines
