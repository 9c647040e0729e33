"""What a model is to the rest of vae-cli: its outputs (``VAEOutput``) and the questions it answers (``Model``).

The trainer, the training step, the objectives and evaluation are typed ``Model`` and ask only what this protocol
declares, so the flat VAE (``vae``), the hierarchical one (``hierarchical``) and the VQ-VAE (``vqvae``) are
interchangeable; ``tests/unit/test_protocol.py`` checks that each satisfies it. A VQ-VAE also answers
``CodeGridModel`` (its codes), which evaluation asks of models that have one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Generator, Tensor, nn

from vae_cli.models.likelihoods.base import Likelihood


@dataclass
class VAEOutput:
    params: torch.Tensor  # decoder output: the likelihood's parameters, [B, P, H, W]
    mu: torch.Tensor  # [B, latent_dim]
    logvar: torch.Tensor  # [B, latent_dim]
    z: torch.Tensor  # [B, latent_dim], the reparameterized sample
    # A hierarchical model's closed-form KL of each dimension given the layers sampled above it; None for a flat one.
    kl_dims: torch.Tensor | None = None
    # What a model adds for its own objective terms (a VQ-VAE's codes, codebook and commitment losses).
    extras: dict[str, torch.Tensor] | None = None
    # log q(z|x) at z [B] where the posterior computed it (flows, vMF, wrapped normal; None for the Gaussian, whose
    # KL is in closed form or computed from (mu, logvar) by the prior).
    log_q: torch.Tensor | None = None
    # A rejection sampler's log pi(eps) [B] (vMF), for its gradient's correction term (objectives.base.reconstruction).
    score: torch.Tensor | None = None


class NoExtraTerms:
    """The defaults of the model contract's optional parts: a model with no losses or monitors of its own."""

    layer_names: tuple[str, ...] = ()
    # Losses the objective adds to its loss (a VQ-VAE's codebook and commitment), and batch statistics it reports.
    aux_loss_names: tuple[str, ...] = ()
    monitor_names: tuple[str, ...] = ()
    # False when prior samples are meaningless (a VQ-VAE before its prior is trained): no sample grids then.
    can_sample = True
    # True when q(z|x) is a single point (VQ-VAE): importance sampling has nothing to average.
    deterministic_posterior = False

    def aux_losses(self, out: VAEOutput) -> dict[str, torch.Tensor]:
        return {}

    def monitors(self, out: VAEOutput) -> dict[str, torch.Tensor]:
        return {}


@runtime_checkable
class Model(Protocol):
    """What the trainer, objectives and evaluation may ask of any model (besides being an ``nn.Module``)."""

    likelihood: Likelihood
    latent_dim: int  # size of the flat z the rest of vae-cli sees
    num_classes: int  # a CVAE's classes; 0 for an unconditional model
    layer_names: tuple[str, ...]  # a hierarchy's stochastic layers, top first; () for one latent layer
    aux_loss_names: tuple[str, ...]
    monitor_names: tuple[str, ...]
    can_sample: bool
    deterministic_posterior: bool
    training: bool

    @property
    def conditional(self) -> bool: ...

    @property
    def device(self) -> torch.device: ...

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> VAEOutput: ...

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z|x), flat ``[B, latent_dim]`` each."""
        ...

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's parameters for flat latents ``z``."""
        ...

    def kl(self, out: VAEOutput) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image ``[B]``."""
        ...

    def kl_layers(self, out: VAEOutput) -> torch.Tensor:
        """Each stochastic layer's KL per image ``[B, L]`` (``[B, 0]`` for one layer)."""
        ...

    def closed_form_kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor | None:
        """Each dimension's KL ``[B, D]`` where it has a closed form, else None."""
        ...

    def log_weights(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        eps: torch.Tensor,
        stop_q: bool = False,
        generator: Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log p(x|z), log p(z), log q(z|x), z)`` for noise ``eps`` ``[K, B, D]``: the first three ``[K, B]``
        (``generator``: a sampler's randomness beyond eps, vMF's rejection loop)."""
        ...

    def prior_sample(self, n: int, generator: Generator | None = None, temperature: float = 1.0) -> Tensor:
        """n draws of z ~ p(z), flat."""
        ...

    def sample(self, n: int, generator: Generator | None = None, y: Tensor | None = None, temperature: float = 1.0):
        """The likelihood's parameters of n prior samples (given labels ``y`` for a CVAE)."""
        ...

    def aux_losses(self, out: VAEOutput) -> dict[str, torch.Tensor]: ...

    def monitors(self, out: VAEOutput) -> dict[str, torch.Tensor]: ...

    # The parts of nn.Module that training, checkpoints and evaluation use.
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, nn.Parameter]]: ...

    def modules(self) -> Iterator[nn.Module]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class FlatModel(Model, Protocol):
    """A model with one latent vector whose posterior draws and joint density are separate questions (the flat VAE):
    objectives that treat z on its own (PIWAE's two gradient paths, HVAE's leapfrog steps) ask these."""

    def draw_posterior(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        eps: torch.Tensor,
        stop_q: bool = False,
        generator: Generator | None = None,
    ) -> Any:
        """K draws of z ~ q(z|x) from noise ``eps`` ``[K, B, D]``: a ``Draw`` (z, log q)."""
        ...

    def log_joint(self, x: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(x|z), log p(z))`` ``[K, B]`` for ``z`` ``[K, B, D]``."""
        ...


@runtime_checkable
class CodeGridModel(Model, Protocol):
    """A model whose latent is a grid of discrete codes (a VQ-VAE)."""

    grid: tuple[int, int]

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The code of each grid position, ``[B, h, w]`` (int64)."""
        ...

    @property
    def codebook_size(self) -> int: ...
