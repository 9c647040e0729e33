"""What the objectives with a discriminator share (loss=factor_vae, aae, vaegan): the discriminator's parameters as
their own optimizer group, evaluating a discriminator with its parameters stopped (so a loss that must fool it
never trains it), and the non-saturating GAN losses.

One forward and one backward serve every network: a term that trains the discriminator sees only detached inputs,
and a term that trains the encoder or decoder sees the discriminator through ``frozen`` (its parameters detached),
so each gradient reaches exactly the parameters the paper updates with it (tests/unit/test_autoencoders.py checks
every pair).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F


def discriminator_group(discriminator: nn.Module, lr: float, betas: tuple[float, ...]) -> dict[str, Any]:
    """The optimizer parameter group of a discriminator: its own Adam settings, no weight decay."""
    return {
        "params": list(discriminator.parameters()),
        "lr": lr,
        "betas": betas,
        "weight_decay": 0.0,
        "name": "discriminator",
    }


def frozen(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module(*args)`` with its parameters detached: gradients reach the inputs, never the module."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, args, kwargs)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(real) - log(1 - D(fake)), each averaged over its rows (fp32)."""
    real, fake = real_logits.float(), fake_logits.float()
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


def fooling_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's non-saturating loss -log D(fake) (Goodfellow et al., 2014), averaged (fp32)."""
    fake = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's accuracy on both halves (a batch statistic, no gradient)."""
    with torch.no_grad():
        return 0.5 * ((real_logits.float() > 0).float().mean() + (fake_logits.float() <= 0).float().mean())
