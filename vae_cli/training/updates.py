"""What happens to an update after backward, besides the optimizer: the skip guard and the weight average.

Both run on the device (no host sync per step) and inside a CUDA graph; the training step (``step.py``) applies
them in this order: clip (``trainer.grad_clip``), guard (``trainer.skip_grad_norm``), optimizer, average
(``trainer.ema_decay``). The NaN policy, which needs the loop (skip a batch, roll back to a checkpoint), is the
trainer's.

**The skip guard** (``UpdateGuard``). Deep hierarchical VAEs occasionally meet a batch whose gradient is orders of
magnitude larger than usual; one such update can wreck the model, so VDVAE skips every update whose gradient norm exceeds a threshold. Its users report
the trap: when the norm grows past the threshold for good (a threshold a little too low, a longer run), every update
is skipped and training silently stops while the loop goes on. Here an update is skipped only while fewer than
``max_skips_in_a_row`` were skipped just before it; the next one is applied, clipped to the threshold, and the
count of skipped updates is logged (``train/skipped_updates``) so a threshold that bites too often shows.

Everything stays on the device: the decision is a tensor, and fused Adam takes it as ``found_inf`` (the flag
GradScaler uses), skipping the whole update, step count included, inside its kernel. No host sync per step, and the
same code runs inside a CUDA graph.

**The weight average** (``WeightAverage``), used wherever the model is judged (validation, best.pt, the test split,
images, vae-eval, vae-sample)::

    ema <- d_n * ema + (1 - d_n) * weights,  d_n = min(decay, (1 + n) / (10 + n))   after update n = 1, 2, ...

The warm-up of d_n (TensorFlow's ExponentialMovingAverage with num_updates) keeps the initial weights from
dominating a short run: with a plain decay 0.999 the average of a 2,500-step run still holds 8% of the random
initialization (0.999^2500), enough to cost tens of nats; with the warm-up it holds 1e-12 of it.

NVAE and VDVAE evaluate and sample with such an average: it smooths the last steps' noise and is usually a few
tenths of a nat better. Not ``torch.optim.swa_utils.AveragedModel``: its ``update_parameters`` branches on a device
counter (``n_averaged == 0``), a host sync at every step; here the update is one ``_foreach_lerp_`` on the device.
The update count is a device tensor, so the warm-up needs no host sync and is replayed correctly inside a CUDA graph.
Buffers are copied, not averaged. ``swapped()`` puts the average into the model for evaluation and restores the
training weights afterwards (in place: compiled functions and optimizer references stay valid).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = model
        self.decay = float(decay)
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.live = [params[name] for name in self.names]
        self.average = [p.detach().clone() for p in self.live]
        device = self.live[0].device if self.live else torch.device("cpu")
        self.updates = torch.zeros((), device=device)
        self._active = False

    @torch.no_grad()
    def update(self) -> None:
        self.updates.add_(1.0)
        decay = torch.clamp((1.0 + self.updates) / (10.0 + self.updates), max=self.decay)
        torch._foreach_lerp_(self.average, [p.detach() for p in self.live], 1.0 - decay)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The averaged weights in the model for the duration (idempotent when nested)."""
        if self._active:
            yield
            return
        self._active = True
        saved = [p.detach().clone() for p in self.live]
        try:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.live], self.average)
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.live], saved)
            self._active = False

    def averaged_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged parameters (what vae-eval and vae-sample load)."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        for name, value in zip(self.names, self.average, strict=True):
            state[name] = value.detach().clone()
        return state

    def load_averaged(self, state: dict[str, torch.Tensor], updates: float) -> None:
        """The average and its update count from a checkpoint (count 0: averaging starts from these weights)."""
        with torch.no_grad():
            self.updates.fill_(float(updates))
            for name, value in zip(self.names, self.average, strict=True):
                value.copy_(state[name])
