"""glibc malloc thresholds: a training step's freed blocks are reused, not page-faulted in fresh every step."""

import subprocess
import sys

import pytest

FAULTS = """
import resource, sys, torch
from omegaconf import OmegaConf
from vae_cli.config.architectures import ConvConfig
from vae_cli.config.likelihoods import LikelihoodConfig
from vae_cli.config.objectives import ELBOConfig
from vae_cli.config.priors import PriorConfig
from vae_cli.objectives.base import ObjectiveContext
from vae_cli.objectives.elbo import ELBO
from vae_cli.models.build import build_model

if sys.argv[1] == "tuned":
    from vae_cli.process.allocator import keep_freed_memory_for_reuse
    print(keep_freed_memory_for_reuse(), file=sys.stderr)
torch.manual_seed(0)
cfg = OmegaConf.create({"model": ConvConfig(), "prior": PriorConfig(), "likelihood": LikelihoodConfig()})
model = build_model(cfg, (1, 28, 28))
elbo = ELBO(ELBOConfig(), ObjectiveContext(train_size=128, latent_dim=20))
optimizer, x = torch.optim.Adam(model.parameters()), torch.rand(128, 1, 28, 28)

def step():
    optimizer.zero_grad(set_to_none=True)
    elbo(model, x, None, None)["loss"].backward()
    optimizer.step()

for _ in range(3):  # warm: kernels loaded, optimizer state allocated
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
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
    # 20 training steps of the conv model (batch 128): by default glibc hands the step's large freed blocks back
    # to the kernel and faults them in again at the next step; tuned, the warm-up steps' pages are reused.
    assert tuned < default / 5, (default, tuned)
