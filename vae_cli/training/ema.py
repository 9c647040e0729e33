"""An exponential moving average of the weights (``trainer.ema_decay``), used wherever the model is judged.

    ema <- decay * ema + (1 - decay) * weights      after every optimizer step

NVAE and VDVAE evaluate and sample with such an average: it smooths the last steps' noise and is usually a few
tenths of a nat better. Not ``torch.optim.swa_utils.AveragedModel``: its ``update_parameters`` branches on a device
counter (``n_averaged == 0``), a host sync at every step; here the update is one ``_foreach_lerp_`` on the device.
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
        self._active = False

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.average, [p.detach() for p in self.live], 1.0 - self.decay)

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

    def load_averaged(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, value in zip(self.names, self.average, strict=True):
                value.copy_(state[name])
