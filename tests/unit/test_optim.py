"""vae-train's optimizer: torch's Adam update, without the second of importing torch._dynamo at start-up."""

from __future__ import annotations

import subprocess
import sys

import torch

from vae_cli.config.training import OptimConfig
from vae_cli.training.optim import EagerAdam, EagerAdamW, build_optimizer

NO_DYNAMO = """
import sys, torch
from vae_cli.config.training import OptimConfig
from vae_cli.training.optim import build_optimizer
model = torch.nn.Linear(8, 8)
for name in ("adam", "adamw"):
    opt = build_optimizer(OptimConfig(name=name, weight_decay=0.01 if name == "adamw" else 0.0), model.parameters(), fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    for _ in range(3):
        model(torch.randn(4, 8)).pow(2).sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
    opt.load_state_dict(opt.state_dict())
print("torch._dynamo" in sys.modules)
"""


def test_training_without_compile_never_imports_dynamo():
    proc = subprocess.run([sys.executable, "-c", NO_DYNAMO], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert "before `optimizer.step()`" not in proc.stderr  # the LR scheduler sees the steps


def test_the_eager_optimizers_take_torchs_update_bit_for_bit():
    for eager, reference, decay in ((EagerAdam, torch.optim.Adam, 0.0), (EagerAdamW, torch.optim.AdamW, 0.05)):
        torch.manual_seed(0)
        a = torch.nn.Linear(6, 3)
        b = torch.nn.Linear(6, 3)
        b.load_state_dict(a.state_dict())
        opt_a = eager(a.parameters(), lr=0.01, weight_decay=decay, fused=True)
        opt_b = reference(b.parameters(), lr=0.01, weight_decay=decay, fused=True)
        for _ in range(5):
            x = torch.randn(4, 6)
            for model, opt in ((a, opt_a), (b, opt_b)):
                opt.zero_grad()
                model(x).pow(2).sum().backward()
                opt.step()
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
        assert not any(p.requires_grad and p.grad_fn is not None for p in a.parameters())


def test_a_compiled_run_keeps_torchs_own_optimizer():
    opt = build_optimizer(OptimConfig(), torch.nn.Linear(2, 2).parameters(), compiled=True)
    assert type(opt) is torch.optim.Adam
