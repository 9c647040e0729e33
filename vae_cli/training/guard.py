"""Skipping of bad updates (``trainer.skip_grad_norm``), with a guard so that training cannot skip forever.

Deep hierarchical VAEs occasionally meet a batch whose gradient is orders of magnitude larger than usual; one such
update can wreck the model, so VDVAE skips every update whose gradient norm exceeds a threshold. Its users report
the trap: when the norm grows past the threshold for good (a threshold a little too low, a longer run), every update
is skipped and training silently stops while the loop goes on. Here an update is skipped only while fewer than
``max_skips_in_a_row`` were skipped just before it; the next one is applied, clipped to the threshold, and the
count of skipped updates is logged (``train/skipped_updates``) so a threshold that bites too often shows.

Everything stays on the device: the decision is a tensor, and fused Adam takes it as ``found_inf`` (the flag
GradScaler uses), skipping the whole update, step count included, inside its kernel. No host sync per step, and the
same code runs inside a CUDA graph.
"""

from __future__ import annotations

import torch
from torch import nn


class UpdateGuard:
    def __init__(self, threshold: float, max_in_a_row: int, optimizer: torch.optim.Optimizer, device: torch.device):
        self.threshold = float(threshold)
        self.max_in_a_row = int(max_in_a_row)
        self.optimizer = optimizer
        self.fused = all(group.get("fused") for group in optimizer.param_groups)
        self.skip = torch.zeros((), device=device)  # 1.0: the optimizer skips this update
        self.in_a_row = torch.zeros((), device=device)
        self.skipped = torch.zeros((), device=device)  # updates skipped so far in this run
        if self.fused:
            # Read by torch.optim.Adam/AdamW.step for fused kernels; the same tensor for every step (graph-safe).
            optimizer.found_inf = self.skip  # type: ignore[attr-defined]

    def decide(self, parameters: list[torch.Tensor], norm: torch.Tensor, clipped_to: float | None = None) -> None:
        """Given the gradient norm before any clipping (and ``grad_clip``, if the gradients were clipped since):
        decide whether this update is skipped, and clip it to the threshold (a no-op below it; an update over it
        that the guard lets through is applied clipped)."""
        over = norm > self.threshold
        skip = over & (self.in_a_row < self.max_in_a_row)
        self.skip.copy_(skip)
        self.in_a_row.copy_(torch.where(skip, self.in_a_row + 1, torch.zeros_like(self.in_a_row)))
        self.skipped.add_(skip.to(self.skipped.dtype))
        now = norm if clipped_to is None else torch.clamp(norm, max=clipped_to)
        nn.utils.clip_grads_with_norm_(parameters, self.threshold, now)

    def step(self) -> None:
        if self.fused or not bool(self.skip.item()):
            self.optimizer.step()

    def state_dict(self) -> dict[str, float]:
        return {"in_a_row": float(self.in_a_row.item()), "skipped": float(self.skipped.item())}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.in_a_row.fill_(float(state.get("in_a_row", 0.0)))
        self.skipped.fill_(float(state.get("skipped", 0.0)))
