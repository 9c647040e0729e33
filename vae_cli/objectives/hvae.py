"""``loss=hvae``: the Hamiltonian VAE (Caterini, Doucet & Sejdinovic 2018): the posterior sample is moved by K
leapfrog steps of Hamiltonian dynamics on the model's own log p(x, z), with tempering, a flow on (z, rho) whose
volume change is known, so the bound stays exact.

    z_0 ~ q(z | x),  rho_0 ~ N(0, I / beta_0)                          (beta_0 = loss.tempering; 1: no tempering)
    step k = 1..K:  rho~ = rho - eps/2 * grad U(z);  z = z + eps * rho~;  rho' = rho~ - eps/2 * grad U(z)
                    rho = sqrt(beta_(k-1) / beta_k) rho'                U(z) = -log p(x, z)
    1 / sqrt(beta_k) = (1 - 1/sqrt(beta_0)) k^2 / K^2 + 1/sqrt(beta_0)   (the paper's quadratic schedule; beta_K = 1)

Leapfrog preserves volume and the tempering scales rho by sqrt(beta_0) in all (D dimensions: (D/2) log beta_0), so

    bound = log p(x, z_K) + log N(rho_K; 0, I) - log q(z_0 | x) - log N(rho_0; 0, I / beta_0) + (D / 2) log beta_0

a lower bound on log p(x) (one sample). With K = 0 the rho terms cancel and the bound is the one-sample ELBO
log p(x, z_0) - log q(z_0 | x) on the same noise (tests/unit/test_iw_family.py); tempering needs K >= 1. The step
size eps (one per latent dimension, eps = 0.5 sigmoid(raw)) is learned with the model; grad U is taken with
``create_graph`` in training so the bound's gradient flows through the dynamics (a second-order pass through the
decoder: each step costs about two decoder passes more). The tempering is fixed (the paper's "HVAE with fixed
tempering"). vae-eval's importance-weighted log-likelihood uses q(z | x) itself as its proposal.

Reported: ``elbo`` (the HVAE bound), ``recon`` (-log p(x | z_K)), ``kl`` (the rest: elbo = -(recon + kl)),
``step_size`` (the mean eps).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vae_cli.models.protocol import FlatModel, Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms

LOG_2PI = math.log(2 * math.pi)
MAX_STEP = 0.5


def tempering_schedule(beta0: float, steps: int) -> list[float]:
    """beta_0 .. beta_K of the quadratic schedule (beta_K = 1)."""
    if steps == 0:
        return [1.0]
    inv0 = 1 / math.sqrt(beta0)
    return [1 / ((1 - inv0) * k**2 / steps**2 + inv0) ** 2 for k in range(steps + 1)]


class HVAE(Objective):
    terms = ("loss", "elbo", "recon", "kl", "step_size")

    def __init__(self, cfg: Any, context: ObjectiveContext) -> None:
        super().__init__()
        steps = int(cfg.leapfrog_steps)
        self.betas = tempering_schedule(float(cfg.tempering) if steps else 1.0, steps)
        start = float(cfg.step_size) / MAX_STEP
        self.raw_step = nn.Parameter(torch.full((context.latent_dim,), math.log(start / (1 - start))))

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.raw_step], "name": "hvae_step_size", "weight_decay": 0.0}]

    def step_size(self) -> torch.Tensor:
        return MAX_STEP * torch.sigmoid(self.raw_step)

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        assert isinstance(model, FlatModel), "loss=hvae needs a model with one latent vector"
        training = torch.is_grad_enabled()
        eps = self.step_size()
        with torch.enable_grad():
            bound_i, log_px_z = hamiltonian_bound(model, x, y, eps, self.betas, training)
        bound = bound_i.mean()
        recon = -log_px_z.mean()
        terms = {"loss": -bound, "elbo": bound, "recon": recon, "kl": -bound - recon, "step_size": eps.mean()}
        return terms if training else {k: v.detach() for k, v in terms.items()}


def hamiltonian_bound(
    model: FlatModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    step_size: torch.Tensor,
    betas: list[float],
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The HVAE bound of each image ``[B]`` (one posterior sample and K = len(betas) - 1 leapfrog steps of size
    ``step_size`` ``[D]`` with the tempering ``betas``), and log p(x | z_K) ``[B]``. ``training``: the bound is
    differentiated (``create_graph`` through the dynamics)."""
    b, d = x.shape[0], model.latent_dim
    steps = len(betas) - 1
    draw = model.draw_posterior(x, y, torch.randn((1, b, d), device=x.device))
    z, log_q0 = draw.z, draw.log_q.float()
    if not training:
        z = z.detach().requires_grad_(True)
    beta0 = betas[0]
    gamma = torch.randn_like(z)
    rho = gamma / math.sqrt(beta0)
    log_rho0 = -0.5 * (gamma.float().pow(2) - math.log(beta0) + LOG_2PI).sum(-1)  # log N(rho_0; 0, I / beta_0)
    eps = step_size.to(z.dtype)

    def grad_u(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_px_z, log_pz = model.log_joint(x, y, z)
        joint = log_px_z.float() + log_pz.float()
        (g,) = torch.autograd.grad(joint.sum(), z, create_graph=training)
        return -g, log_px_z, log_pz

    if steps == 0:
        log_px_z, log_pz = model.log_joint(x, y, z)
    else:
        g, log_px_z, log_pz = grad_u(z)
    for k in range(1, steps + 1):
        rho = rho - eps / 2 * g
        z = z + eps * rho
        g, log_px_z, log_pz = grad_u(z)
        rho = (rho - eps / 2 * g) * math.sqrt(betas[k - 1] / betas[k])
    log_rho_k = -0.5 * (rho.float().pow(2) + LOG_2PI).sum(-1)
    bound = log_px_z.float() + log_pz.float() + log_rho_k - log_q0 - log_rho0 + 0.5 * d * math.log(beta0)
    return bound.squeeze(0), log_px_z.float().squeeze(0)
