"""vae-train's optimizer: torch's Adam update, without the second of importing torch._dynamo at start-up."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from vae_cli.config.training import OptimConfig
from vae_cli.training.optim import EagerAdam, EagerAdamW, build_optimizer, build_scheduler

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


def _closed_form_lr(step: int, lr: float, warmup: int, total: int, floor: float, cosine: bool) -> float:
    """The schedule as docs/usage describe it, written out with numpy: linear warm-up to lr over ``warmup`` steps,
    then lr (constant) or a half cosine from lr to lr * floor over the remaining steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if not cosine:
        return lr
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (floor + (1 - floor) * (1 + np.cos(np.pi * t)) / 2)


@pytest.mark.parametrize(
    "schedule, warmup, floor",
    [("cosine", 5, 0.1), ("cosine", 0, 0.0), ("none", 7, 0.0), ("none", 0, 0.0)],
)
def test_the_learning_rate_follows_the_schedule_step_by_step(schedule, warmup, floor):
    # The config as the run has it (a DictConfig of the typed schema), and the lr the optimizer really applies.
    cfg = OmegaConf.structured(OptimConfig(lr=0.01, schedule=schedule, warmup_steps=warmup, min_lr_ratio=floor))
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(cfg, model.parameters(), fused=True)
    total = 30
    sched = build_scheduler(cfg, opt, total_steps=total)
    seen = []
    for _ in range(total + 3):  # past the end the cosine stays at its floor
        seen.append(opt.param_groups[0]["lr"])
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    expected = [_closed_form_lr(k, 0.01, warmup, total, floor, schedule == "cosine") for k in range(total + 3)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12, atol=1e-15)


def test_a_resumed_schedule_follows_the_resumed_runs_own_length():
    # The scheduler's state is counters only: a resume that trains longer (more epochs) stretches the cosine to
    # the new total instead of taking the old one back from the checkpoint, and the state loads weights_only.
    cfg = OmegaConf.structured(OptimConfig(lr=0.01, schedule="cosine", warmup_steps=2))
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(cfg, model.parameters(), fused=True)
    sched = build_scheduler(cfg, opt, total_steps=10)
    for _ in range(4):
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = build_scheduler(cfg, build_optimizer(cfg, model.parameters(), fused=True), total_steps=40)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 4
    assert resumed.lr_lambdas[0](4) == pytest.approx(_closed_form_lr(4, 1.0, 2, 40, 0.0, True), rel=1e-12)
