"""``--sampler gmm``: a Gaussian mixture fitted by EM to the codes (scikit-learn's ``GaussianMixture``), as Ghosh et
al. (2020) sample their regularized autoencoders ex post (their GMM(10) on MNIST-sized codes).

The fitted weights, means and Cholesky factors are kept as tensors; sampling and the density are torch's
(``MixtureSameFamily`` of ``MultivariateNormal``), so a saved sampler needs no scikit-learn object to be unpickled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from vae_cli.config.samplers import Covariance
from vae_cli.models.priors import Prior
from vae_cli.samplers.base import LatentSampler


class GMMSampler(LatentSampler):
    def __init__(self, cfg: Any, latent_dim: int) -> None:
        super().__init__(latent_dim)
        k = int(cfg.components)
        self.components = k
        self.covariance = Covariance(cfg.covariance)
        self.max_iter, self.n_init, self.reg_covar = int(cfg.max_iter), int(cfg.n_init), float(cfg.reg_covar)
        self.register_buffer("weights", torch.full((k,), 1.0 / k, dtype=torch.float64))
        self.register_buffer("means", torch.zeros(k, latent_dim, dtype=torch.float64))
        self.register_buffer("scale_tril", torch.eye(latent_dim, dtype=torch.float64).repeat(k, 1, 1))

    def fit(self, codes: torch.Tensor, seed: int) -> dict[str, float]:
        from sklearn.mixture import GaussianMixture  # imported when a mixture is fitted, not when one is loaded

        x = codes.double().cpu().numpy()
        if x.shape[0] < self.components:
            raise ValueError(
                f"a mixture of {self.components} components needs at least as many codes (got {x.shape[0]})"
            )
        gmm = GaussianMixture(
            n_components=self.components,
            covariance_type=self.covariance.value,
            max_iter=self.max_iter,
            n_init=self.n_init,
            reg_covar=self.reg_covar,
            random_state=seed,
        ).fit(x)
        cov = (
            gmm.covariances_ if self.covariance == Covariance.full else np.stack([np.diag(c) for c in gmm.covariances_])
        )
        self.weights.copy_(torch.from_numpy(gmm.weights_))
        self.means.copy_(torch.from_numpy(gmm.means_))
        self.scale_tril.copy_(torch.linalg.cholesky(torch.from_numpy(cov)))
        return {"converged": float(gmm.converged_), "em_iterations": float(gmm.n_iter_)}

    def distribution(self) -> MixtureSameFamily:
        return MixtureSameFamily(
            Categorical(probs=self.weights), MultivariateNormal(self.means, scale_tril=self.scale_tril)
        )

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, 1, generator=generator, dtype=torch.float64)
        z = self.means[component] + (self.scale_tril[component] @ eps).squeeze(-1)
        return z.float()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.distribution().log_prob(z.double().cpu())

    def describe(self) -> str:
        return f"GMM, {self.components} components, {self.covariance.value} covariances"


def build(cfg: Any, latent_dim: int, prior: Prior) -> LatentSampler:
    return GMMSampler(cfg, latent_dim)
