"""glibc malloc thresholds: freed step-sized blocks are reused, not page-faulted in fresh every step."""

import subprocess
import sys

import pytest

FAULTS = """
import resource, sys, torch
if sys.argv[1] == "tuned":
    from vae_cli.allocator import keep_freed_memory_for_reuse
    print(keep_freed_memory_for_reuse(), file=sys.stderr)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    torch.empty(2 * 2**20).fill_(1.0)  # 8 MB, allocated and freed like a conv step's buffers
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1]), proc.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_a_freed_block_is_reused_instead_of_faulted_in_again():
    default, _ = page_faults("default")
    tuned, said = page_faults("tuned")
    assert "reused from the heap" in said
    # 40 x 8 MB: by default every block is a fresh mmap (~2k page faults each); tuned, one block's worth.
    assert default > 20_000 and tuned < default / 5, (default, tuned)
