"""Optimizer and learning-rate schedule from the ``optim`` config group."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch

from vae_cli.config.enums import OptimizerName, Schedule
from vae_cli.config.training import OptimConfig

# Start-up: torch's optimizers import torch._dynamo (about 1.0 s, a third of vae-train's launch -> first step) the
# first time they are used, only to tell dynamo not to trace them: ``step`` through its grad-mode wrapper, which
# imports it to insert graph breaks, and ``add_param_group`` / ``zero_grad`` / ``state_dict`` ... through
# ``torch._disable_dynamo``, which imports it to mark them. vae-train never traces its optimizer (trainer.compile
# compiles the forward pass and the loss only), so without compile the optimizer below steps through the same
# update function directly, under no_grad (what the wrapper does for a non-differentiable optimizer), and the marks
# are made without dynamo. The update is torch's own: tests/unit/test_step.py compares it with torch.optim.Adam
# bit for bit, and tests/unit/test_optim.py checks that torch._dynamo is never imported.


def _skip_dynamo_marks(cls: type[torch.optim.Optimizer]) -> int:
    """Cache each ``torch._disable_dynamo``-wrapped method of ``cls`` as its own marked version (the cache the
    wrapper fills with dynamo's at its first call). Returns how many there were: 0 if a torch release changes the
    mechanism, which then only costs the import again."""
    from torch._compile import _disable_dynamo

    wrapper_code = _disable_dynamo(lambda: None).__code__
    found = 0
    for klass in cls.__mro__:
        for attr in vars(klass).values():
            original = getattr(attr, "__wrapped__", None)
            if getattr(attr, "__code__", None) is wrapper_code and original is not None:
                if getattr(original, "__dynamo_disable", None) is None:
                    original.__dynamo_disable = original  # type: ignore[attr-defined]
                found += 1
    return found


class EagerAdam(torch.optim.Adam):
    """``torch.optim.Adam``, stepped without importing torch._dynamo (see above)."""

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        return _ADAM_UPDATE(self, closure)


class EagerAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW``, stepped without importing torch._dynamo (see above)."""

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        return _ADAMW_UPDATE(self, closure)


# The update functions themselves, under every wrapper (grad mode, profiling hooks).
_ADAM_UPDATE = inspect.unwrap(torch.optim.Adam.step)
_ADAMW_UPDATE = inspect.unwrap(torch.optim.AdamW.step)


def build_optimizer(cfg: OptimConfig, params, fused: bool = False, compiled: bool = False) -> torch.optim.Optimizer:
    """``fused=True`` updates every parameter in one kernel (CPU and CUDA): the same Adam math, and on the classic
    MLP about 15% of a CPU step saved over the default multi-tensor implementation. Unless the run compiles
    (``compiled``), the optimizer does not import torch._dynamo."""
    adam = cfg.name == OptimizerName.adam
    if compiled:
        cls: type[torch.optim.Optimizer] = torch.optim.Adam if adam else torch.optim.AdamW
    else:
        cls = EagerAdam if adam else EagerAdamW
        _skip_dynamo_marks(cls)
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


@dataclass(frozen=True)
class LRSchedule:
    """The learning-rate multiplier as a plain function of the step: linear warm-up, then constant or cosine decay.

    Its numbers are read from the ``optim`` config once, when the run starts: the scheduler asks for the factor at
    every optimizer step, and reading a DictConfig node costs ~8 us of Python (the scheduler's step took 18.7 us
    with two to five reads, 2.2 us now: ~0.5% of the classic MLP's bf16 step on a CPU)."""

    warmup_steps: int
    cosine: bool
    min_lr_ratio: float
    total_steps: int

    @classmethod
    def from_config(cls, cfg: OptimConfig, total_steps: int) -> LRSchedule:
        return cls(
            warmup_steps=int(cfg.warmup_steps),
            cosine=Schedule(cfg.schedule) == Schedule.cosine,
            min_lr_ratio=float(cfg.min_lr_ratio),
            total_steps=int(total_steps),
        )

    def __call__(self, step: int) -> float:
        """Multiplier on ``optim.lr`` after ``step`` optimizer steps."""
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if not self.cosine:
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    cfg: OptimConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = LRSchedule.from_config(cfg, total_steps)
    # A plain function of the step (a lambda, not the callable object: LambdaLR would save an object's attributes
    # in its state_dict and restore them on resume, over a resumed run's own trainer.epochs): the scheduler's
    # state_dict is then just counters (weights_only-safe).
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step))
