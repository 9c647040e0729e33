"""Priors p(z): modules with ``log_prob(z)``, ``sample(n)`` and, where it exists, the KL to a diagonal Gaussian
posterior in closed form.

- ``StandardNormal``: N(0, I); KL in closed form, per dimension.
- ``MixtureOfGaussians`` (``prior=mog``): K learned diagonal Gaussians with learned weights.
- ``VampPrior`` (``prior=vamp``, Tomczak & Welling 2018): p(z) = 1/K sum_k q(z | u_k) over K learned
  pseudo-inputs u_k, so the prior is the encoder's own aggregate posterior of a learned "dataset". Sampling draws a
  component and then z ~ q(z | u_k), never from N(0, I).

Without a closed form, the KL of a sample is estimated as log q(z|x) - log p(z) (``Prior.kl`` with ``z``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vae_cli.config.catalog import PRIORS
from vae_cli.config.priors import PseudoInputInit

LOG_2PI = math.log(2 * math.pi)
# Elements of the [chunk, K] tensors a mixture density builds at once: bounds memory for large evaluations.
MIXTURE_CHUNK_ELEMENTS = 1 << 24


def diag_normal_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) per dimension (broadcasting), float32; sum over the last axis for the joint."""
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)


def mixture_log_prob(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor
) -> torch.Tensor:
    """log sum_k w_k N(z; mu_k, diag sigma_k^2) for ``z`` ``[..., D]`` and components ``[K, D]``: ``[...]``, float32.

    The quadratic form is expanded, sum_d z_d^2 / s_kd - 2 z_d mu_kd / s_kd + mu_kd^2 / s_kd, so the K x D work is
    two matrix products instead of a ``[N, K, D]`` tensor built elementwise (6x faster for a 500-component VampPrior
    over 20 dimensions on this project's 2-core machine: vae-eval with K = 1000 is dominated by it). The expansion cancels
    catastrophically in float32 when sigma is small ((z/sigma)^2 ~ 1e6 minus a similar number); it is done in
    float64, where the cancellation costs ~1e-10, and outside autocast. Chunks of z bound the ``[chunk, K]`` memory.
    """
    with torch.autocast(z.device.type, enabled=False):
        flat = z.reshape(-1, z.shape[-1]).double()
        inv_var = torch.exp(-logvar.double())  # [K, D]
        mu64 = mu.double()
        const = (mu64.pow(2) * inv_var).sum(-1) + logvar.double().sum(-1) + mu.shape[-1] * LOG_2PI  # [K]
        weights = log_weights.double()
        chunk = max(1, MIXTURE_CHUNK_ELEMENTS // max(1, mu.shape[0]))
        parts = []
        for c in flat.split(chunk):
            quad = c.pow(2) @ inv_var.T - 2 * (c @ (mu64 * inv_var).T) + const  # [chunk, K]
            parts.append(torch.logsumexp(weights - 0.5 * quad, dim=-1))
        return torch.cat(parts).float().reshape(z.shape[:-1])


def randn_from(n: int, d: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal draws made on the generator's device (CPU by default), then moved: seeded pictures are then
    the same on every device."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(n, d, generator=generator, device=gen_device).to(device)


class Prior(nn.Module):
    """The contract of every prior over ``latent_dim`` dimensions."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) over the last axis: ``[...]`` for ``z`` ``[..., D]``, float32."""
        raise NotImplementedError

    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, device=None
    ) -> torch.Tensor:
        """``n`` draws, ``[n, D]``; ``temperature`` scales each component's standard deviation."""
        raise NotImplementedError

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor | None:
        """KL(q(z|x) || p(z)) of each dimension in closed form, ``[B, D]``; None where the prior has none."""
        return None

    def attach(self, encoder: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> None:
        """The model's encoder, for a prior defined through it (the VampPrior); the others ignore it."""

    def attach_posterior(self, posterior: nn.Module) -> None:
        """The model's posterior, for a prior on its space (the Poincare ball's curvature); the others ignore it."""

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image ``[B]``: closed form where it exists, else the one-sample estimate
        log q(z|x) - log p(z) at ``z`` (a sample of q, which must be given then)."""
        per_dim = self.kl_per_dim(mu, logvar)
        if per_dim is not None:
            return per_dim.sum(dim=-1)
        if z is None:
            raise ValueError(f"{type(self).__name__} has no closed-form KL: pass a posterior sample z")
        return diag_normal_log_prob(z, mu, logvar).sum(-1) - self.log_prob(z)

    @property
    def device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")


class StandardNormal(Prior):
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.float().pow(2) + LOG_2PI).sum(dim=-1)

    def sample(self, n, generator=None, temperature=1.0, device=None) -> torch.Tensor:
        return temperature * randn_from(n, self.latent_dim, generator, torch.device(device or "cpu"))

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        mu, logvar = mu.float(), logvar.float()
        return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


class _Mixture(Prior):
    """Shared by the learned mixtures: components ``(mu [K, D], logvar [K, D], log_weights [K])``."""

    def components(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(z, *self.components())

    def sample(self, n, generator=None, temperature=1.0, device=None) -> torch.Tensor:
        mu, logvar, log_w = (t.detach().float() for t in self.components())
        gen_device = generator.device if generator is not None else mu.device
        which = torch.multinomial(log_w.softmax(-1).to(gen_device), n, replacement=True, generator=generator)
        eps = randn_from(n, self.latent_dim, generator, gen_device)
        which, eps = which.to(mu.device), eps.to(mu.device)
        z = mu[which] + temperature * torch.exp(0.5 * logvar[which]) * eps
        return z.to(device) if device is not None else z


class MixtureOfGaussians(_Mixture):
    """p(z) = sum_k softmax(logits)_k N(z; m_k, diag exp(s_k)), all learned. The means start as draws from N(0, I)
    (seeded by the global RNG, like every weight), the variances at 1, the weights uniform."""

    def __init__(self, latent_dim: int, components: int) -> None:
        super().__init__(latent_dim)
        self.means = nn.Parameter(torch.randn(components, latent_dim))
        self.logvars = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def components(self):
        return self.means, self.logvars, torch.log_softmax(self.logits.float(), dim=-1)


Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class VampPrior(_Mixture):
    """p(z) = 1/K sum_k q(z | u_k): K pseudo-inputs, image-shaped parameters bounded to [0, 1] by a hardtanh.

    ``init=random``: grey 0.5 plus N(0, 0.01) noise. ``init=data``: K training images, squeezed into
    [0.02, 0.98] so the hardtanh's gradient is alive at binary pixels. The encoder is the VAE's own; it is held
    outside the module tree (``attach``), so its weights are saved once, under the VAE's encoder.
    """

    def __init__(
        self,
        latent_dim: int,
        components: int,
        image_shape: tuple[int, int, int],
        init: PseudoInputInit = PseudoInputInit.random,
        init_images: torch.Tensor | None = None,
    ) -> None:
        super().__init__(latent_dim)
        # init=data without images: a model rebuilt to load saved weights, which replace these anyway.
        if PseudoInputInit(init) == PseudoInputInit.data and init_images is not None:
            if init_images.shape[0] < components:
                raise ValueError("prior.init=data needs at least prior.components training images")
            start = 0.02 + 0.96 * init_images[:components].float().cpu()
        else:
            start = 0.5 + 0.01 * torch.randn(components, *image_shape)
        self.pseudo_inputs = nn.Parameter(start.reshape(components, *image_shape))
        self._encoder: list[Encoder] = []

    def attach(self, encoder: Encoder) -> None:
        self._encoder = [encoder]

    def inputs(self) -> torch.Tensor:
        return nn.functional.hardtanh(self.pseudo_inputs, 0.0, 1.0)

    def components(self):
        if not self._encoder:
            raise RuntimeError("VampPrior.attach(encoder) was not called")
        mu, logvar = self._encoder[0](self.inputs())
        k = mu.shape[0]
        return mu.float(), logvar.float(), torch.full((k,), -math.log(k), device=mu.device)


def build_prior(
    cfg: Any, latent_dim: int, image_shape: tuple[int, int, int], init_images: torch.Tensor | None = None
) -> Prior:
    """The prior over a latent vector that ``cfg`` (the ``prior`` group) names, through its catalog entry."""
    return PRIORS.load(cfg.name)(cfg, latent_dim, image_shape, init_images)


def build_standard_normal(cfg: Any, latent_dim: int, image_shape: tuple[int, int, int], init_images=None) -> Prior:
    return StandardNormal(latent_dim)


def build_mixture(cfg: Any, latent_dim: int, image_shape: tuple[int, int, int], init_images=None) -> Prior:
    return MixtureOfGaussians(latent_dim, cfg.components)


def build_vamp(cfg: Any, latent_dim: int, image_shape: tuple[int, int, int], init_images=None) -> Prior:
    return VampPrior(latent_dim, cfg.components, image_shape, cfg.init, init_images)
