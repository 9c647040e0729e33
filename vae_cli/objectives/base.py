"""The contract of every objective, and the pieces most of them share.

An objective is a module called as ``objective(model, x, y, step)``. It returns a dict of named terms, each a 0-d
float32 tensor (a per-image mean, in nats, or a batch statistic such as an MMD), in the order ``terms`` declares:

- ``loss`` (always first) is what the VAE minimizes, and what model selection (``best.pt``) compares unless the
  objective names another term (``selection``);
- ``aux_terms`` (e.g. FactorVAE's ``disc``) are minimized too, by the objective's own parameters: the training step
  back-propagates ``loss + sum(aux)`` once, and each term's graph reaches only the parameters it trains;
- a bound on log p(x) is reported as ``elbo`` (and ``iw_elbo`` for IWAE) where the objective has one.

``step`` is the optimizer step as a 0-d tensor on the training device (None in evaluation: the final weights).
Schedules (a KL warm-up, a capacity) are computed from it with tensor operations, so a compiled step or a CUDA
graph follows them without a retrace and without a host sync; ``schedule_values`` gives the same numbers as floats
for logging. The trainer, logging, checkpoints and evaluation iterate over ``terms`` and know no objective by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vae_cli.models.protocol import Model, VAEOutput

Terms = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ObjectiveContext:
    """What an objective may need to know about the data it trains on."""

    train_size: int  # images in the (whole, all ranks') training split: minibatch TC estimators need it
    latent_dim: int
    # A hierarchical model's stochastic layers, top first (each gets its own KL term); () for one latent layer.
    layer_names: tuple[str, ...] = ()
    # The model's own losses (added to the loss) and batch statistics (reported): a VQ-VAE's.
    aux_loss_names: tuple[str, ...] = ()
    monitor_names: tuple[str, ...] = ()
    # (channels, height, width) of the images: an image discriminator (loss=vaegan) is built for them.
    image_shape: tuple[int, int, int] = (1, 28, 28)

    @classmethod
    def of(cls, model, train_size: int, image_shape: tuple[int, int, int] = (1, 28, 28)) -> ObjectiveContext:
        """The context of ``model`` trained on ``train_size`` images of ``image_shape``."""
        return cls(
            train_size=train_size,
            latent_dim=model.latent_dim,
            layer_names=tuple(model.layer_names),
            aux_loss_names=tuple(model.aux_loss_names),
            monitor_names=tuple(model.monitor_names),
            image_shape=tuple(int(d) for d in image_shape),
        )


class Objective(nn.Module):
    terms: tuple[str, ...] = ("loss",)
    aux_terms: tuple[str, ...] = ()
    # The fewest images an evaluation batch needs (terms that are batch statistics); set by build_objective
    # from the objective's schema (config/objectives.py: least_batch).
    least_batch: int = 1
    # The validation term best.pt keeps the best of, and its sign (1: lower is better, -1: higher): the loss, unless
    # part of the loss is a game against a discriminator, whose value rises as the discriminator improves and says
    # nothing of the model across epochs (loss=aae selects on its reconstruction, loss=vaegan on its pixel ELBO).
    selection: tuple[str, float] = ("loss", 1.0)
    # Why the trained model has no bound on log p(x) ("" when it has one): set by build_objective from the
    # objective's catalog fact ``bound`` and the likelihood (config/catalog.py). Read by the IW monitor and vae-eval.
    no_bound: str = ""

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        raise NotImplementedError

    def schedule(self, step: torch.Tensor | None) -> dict[str, Any]:
        """Weights that change with the step (tensor ops on ``step``; None: their final values)."""
        return {}

    def schedule_values(self, step: int | None) -> dict[str, float]:
        """``schedule`` as plain floats, for logging (one formula for training and for the log)."""
        s = None if step is None else torch.tensor(float(step))
        return {k: float(v) for k, v in self.schedule(s).items()}

    def shape_model(self, model: Model) -> None:
        """Change the model's layers where the objective constrains them (RAE's spectral norm on the decoder): done
        once, after the model is built and before its optimizer is made or a checkpoint is loaded into it."""

    def param_groups(self) -> list[dict[str, Any]]:
        """The objective's own parameters, as optimizer parameter groups with their settings (lr, betas, ...)."""
        return []

    def minimized(self, terms: Terms) -> torch.Tensor:
        """What the training step back-propagates."""
        total = terms["loss"]
        for name in self.aux_terms:
            total = total + terms[name]
        return total


def ramp(step: torch.Tensor | None, steps: int, offset: int = 1) -> torch.Tensor | float:
    """min(1, (step + offset) / steps) as a tensor op (1 in evaluation, or when ``steps`` <= 0)."""
    if step is None or steps <= 0:
        return 1.0
    return torch.clamp((step + offset) / steps, max=1.0)


def reconstruction(model: Model, x: torch.Tensor, out: VAEOutput) -> torch.Tensor:
    """-log p(x|z) per image ``[B]``, one z sample. A posterior drawn by rejection (vMF) gives ``out.score``, log pi
    of its accepted noise: the term added here is 0 in value and, in gradient, the sampler's correction
    -log p(x|z) * grad log pi (Naesseth et al. 2017), without which the gradient in kappa is biased."""
    nll = -model.likelihood.log_prob(x, out.params)
    if out.score is not None:
        nll = nll + nll.detach() * (out.score - out.score.detach())
    return nll


def point_reconstruction(
    model: Model, x: torch.Tensor, y: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An autoencoder's pass: z = the location of q(z|x) (the Gaussian's mean: a deterministic encoder), the
    decoder's parameters at z, and -log p(x|z) per image ``[B]``."""
    z, _ = model.encode(x, y)
    params = model.decode(z, y)
    return z, params, -model.likelihood.log_prob(x, params)


def kl_divergence(model: Model, out: VAEOutput) -> torch.Tensor:
    """KL(q(z|x) || p(z)) per image ``[B]`` (``VAE.kl``: closed form where the prior has one, else log q(z|x) -
    log p(z) at the sample; a hierarchy's sum of per-layer closed forms)."""
    return model.kl(out)


def elbo_terms(model: Model, x: torch.Tensor, out: VAEOutput) -> Terms:
    """The batch means of ``recon`` and ``kl``, and the ``elbo`` they make."""
    recon = reconstruction(model, x, out).mean()
    kl = kl_divergence(model, out).mean()
    return {"recon": recon, "kl": kl, "elbo": -(recon + kl)}


def layer_kl_terms(model: Model, out: VAEOutput) -> Terms:
    """``kl_<layer>``: each stochastic layer's batch-mean KL (nothing for a one-layer model)."""
    if not model.layer_names:
        return {}
    per_layer = model.kl_layers(out).mean(dim=0)
    return {f"kl_{name}": per_layer[i] for i, name in enumerate(model.layer_names)}


def no_autocast(t: torch.Tensor):
    """Full precision for an objective's own arithmetic (covariances, kernels, pairwise densities) even when the
    step runs the networks under bf16 autocast."""
    return torch.autocast(t.device.type, enabled=False)
