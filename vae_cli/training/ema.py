"""An exponential moving average of the weights (``trainer.ema_decay``), used wherever the model is judged.

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
