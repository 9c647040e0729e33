"""Rows of an on-disk image cache: the values read back, and that reading them keeps a process's memory flat."""

import subprocess
import sys

import numpy as np
import torch

from vae_cli.datasets.splits import MappedImages


def cache_file(path, n=300, shape=(3, 8, 8)):
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *shape))
    images[...] = np.random.default_rng(0).integers(0, 256, size=images.shape, dtype=np.uint8)
    images.flush()
    return np.asarray(images).copy()


def test_reads_any_rows_in_the_asked_order(tmp_path):
    expected = cache_file(tmp_path / "images.npy")
    mapped = MappedImages(np.load(tmp_path / "images.npy", mmap_mode="r"))
    rng = np.random.default_rng(1)
    cases = [
        rng.permutation(300)[:128],  # a shuffled batch
        np.array([5, 6, 7, 8, 100, 101, 3, 3, 299]),  # runs, a step back, a duplicate, the last row
        np.arange(300),  # everything, in file order: one read
        np.array([], dtype=np.int64),
    ]
    for rows in cases:
        got = mapped.read(torch.from_numpy(rows))
        assert got.dtype == torch.uint8 and got.shape == (len(rows), 3, 8, 8)
        assert np.array_equal(got.numpy(), expected[rows])
    subset = mapped.select(torch.tensor([10, 4, 250]))
    assert np.array_equal(subset.read(torch.tensor([2, 0])).numpy(), expected[[250, 10]])
    assert np.array_equal(subset[1:].numpy(), expected[[4, 250]])
    in_memory = MappedImages(expected)  # a plain array (no file behind it) reads the same
    assert np.array_equal(in_memory.read(torch.tensor([7, 1])).numpy(), expected[[7, 1]])


def test_a_forked_worker_reads_with_its_own_file_and_a_pickled_copy_too(tmp_path):
    import multiprocessing
    import pickle

    expected = cache_file(tmp_path / "images.npy")
    mapped = MappedImages(np.load(tmp_path / "images.npy", mmap_mode="r"))
    mapped.read(torch.tensor([0]))  # the parent opens its file first
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply(mapped.read, (torch.tensor([9, 2]),))
    assert np.array_equal(got.numpy(), expected[[9, 2]])
    copy = pickle.loads(pickle.dumps(mapped))
    assert np.array_equal(copy.read(torch.tensor([4])).numpy(), expected[[4]])


READ_EVERYTHING = """
import sys, numpy as np, torch
from vae_cli.datasets.splits import MappedImages

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

mapped = MappedImages(np.load(sys.argv[1], mmap_mode="r"))
before = rss_mb()
order = torch.randperm(mapped.shape[0])
for start in range(0, len(order), 128):
    mapped.read(order[start : start + 128])
print(rss_mb() - before)
"""


def test_streaming_a_whole_cache_keeps_the_readers_memory_flat(tmp_path):
    # 96 MB of rows, read batch by batch in random order: through the memory map the reader's RSS would grow by
    # the whole file (every page it touched); read with pread only a batch is resident at a time.
    path = tmp_path / "images.npy"
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(8000, 3, 64, 64))
    images[...] = 7
    images.flush()
    del images
    out = subprocess.run([sys.executable, "-c", READ_EVERYTHING, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    grew_mb = float(out.stdout)
    assert grew_mb < 20, f"reading a 96 MB cache grew the reader's RSS by {grew_mb:.0f} MB"
