import math

import pytest
import torch

from vae_cli.config import OptimConfig, OptimizerName, Schedule
from vae_cli.training.optim import build_optimizer, build_scheduler, lr_factor


def test_constant_schedule():
    cfg = OptimConfig(schedule=Schedule.none)
    assert [lr_factor(cfg, s, 100) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]


def test_cosine_schedule_decays_to_min_ratio():
    cfg = OptimConfig(schedule=Schedule.cosine, min_lr_ratio=0.1)
    assert lr_factor(cfg, 0, 100) == pytest.approx(1.0)
    assert lr_factor(cfg, 50, 100) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cfg, 100, 100) == pytest.approx(0.1)


def test_warmup_then_cosine():
    cfg = OptimConfig(schedule=Schedule.cosine, warmup_steps=10)
    assert lr_factor(cfg, 0, 110) == pytest.approx(0.1)
    assert lr_factor(cfg, 9, 110) == pytest.approx(1.0)
    assert lr_factor(cfg, 60, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_scheduler_drives_the_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    cfg = OptimConfig(name=OptimizerName.adamw, lr=0.01, schedule=Schedule.cosine)
    opt = build_optimizer(cfg, [p])
    assert isinstance(opt, torch.optim.AdamW)
    sched = build_scheduler(cfg, opt, total_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5)
