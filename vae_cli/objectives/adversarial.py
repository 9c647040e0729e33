"""What the objectives with a discriminator share (loss=factor_vae, aae, vaegan): the discriminator's parameters as
their own optimizer group, evaluating a discriminator with its parameters stopped (so a loss that must fool it
never trains it, ``DiscriminatorPasses``), and the non-saturating GAN losses.

One forward and one backward serve every network: a term that trains the discriminator sees only detached inputs,
and a term that trains the encoder or decoder sees the discriminator through ``DiscriminatorPasses.frozen`` (its
parameters detached), so each gradient reaches exactly the parameters the paper updates with it
(tests/unit/test_autoencoders.py checks every pair).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from vae_cli.objectives.mlp_passes import SharedMLPPasses, mlp_layers


def discriminator_group(discriminator: nn.Module, lr: float, betas: tuple[float, ...]) -> dict[str, Any]:
    """The optimizer parameter group of a discriminator: its own Adam settings, no weight decay."""
    return {
        "params": list(discriminator.parameters()),
        "lr": lr,
        "betas": betas,
        "weight_decay": 0.0,
        "name": "discriminator",
    }


# The layers whose parameters autocast casts to its low precision (its lower-precision op list: matmuls, convs).
_CAST_BY_AUTOCAST = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


class DiscriminatorPasses:
    """A discriminator's passes within one training step: ``trained`` (its own loss's gradient reaches its
    parameters) and ``frozen`` (its parameters detached: gradients reach the inputs, never the discriminator).

    Under autocast the weights and biases of its linear and convolution layers are cast to the autocast dtype once,
    here, and both passes use that one cast, exactly as autocast would (the same values, the same gradient back to
    the fp32 parameters). Left to autocast, the frozen pass cast every weight again: autocast's cache holds only the
    casts of the parameters themselves, not of detached copies (FactorVAE's step: 8 casts of a 1000 x 1000 weight
    instead of 12, each ~0.5 ms on this project's CPU). Outside autocast both passes use the parameters as they
    are. Build one per step: the casts follow the parameters' current values.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        live = dict(module.named_parameters())
        device_type = next(iter(live.values())).device.type if live else "cpu"
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            for prefix, layer in module.named_modules():
                if isinstance(layer, _CAST_BY_AUTOCAST):
                    for name, p in layer.named_parameters(recurse=False):
                        key = f"{prefix}.{name}" if prefix else name
                        live[key] = p.to(dtype)
        self.live = live
        self.stopped = {name: p.detach() for name, p in live.items()}

    def trained(self, *args: Any) -> Any:
        return functional_call(self.module, self.live, args)

    def frozen(self, *args: Any) -> Any:
        return functional_call(self.module, self.stopped, args)

    def frozen_and_trained(self, shared: torch.Tensor, extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(frozen(shared), trained(cat([shared.detach(), extra])))``: one forward over every row where the
        discriminator is an MLP (``mlp_passes``: the shared rows' numbers are the same in both passes), else the two
        passes."""
        layers = mlp_layers(self.module)
        if layers is None:
            return self.frozen(shared), self.trained(torch.cat([shared.detach(), extra]))
        params = [self.live[f"{name}.{kind}"] for name, _ in layers for kind in ("weight", "bias")]
        slopes = tuple(slope for _, slope in layers[:-1])
        return SharedMLPPasses.apply(shared, extra, slopes, *params)


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
