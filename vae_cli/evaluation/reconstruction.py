"""How well a model without a likelihood bound reconstructs a split (loss=ae, wae, rae, aae; likelihood=msssim).

Such a model has no ELBO and no importance-weighted log p(x): its encoder is a point, or its reconstruction term is a
score. What is reported instead, over the split, at z = the location of q(z|x) (the encoder's mean):

- ``recon``: the trained reconstruction term, -log p(x|z) under the model's likelihood (or its score), per image;
- ``mse``: the mean squared error per pixel between the image and the decoder's mean image, comparable between any
  two models of one dataset whatever their likelihoods;
- the active units (variance of the codes over the split, as for a VAE).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch

from vae_cli.datasets.batches import Batch
from vae_cli.evaluation.bounds import ACTIVE_UNIT_THRESHOLD
from vae_cli.models.layout import input_layout
from vae_cli.models.protocol import Model


@dataclass
class ReconstructionResult:
    split: str
    num_images: int
    recon: float  # -log p(x | z = mu) (or the likelihood's score) per image
    mse: float  # mean over images and pixels of (x - E[x | z = mu])^2
    active_units: int
    active_threshold: float
    mu_variance: list[float]
    no_bound: str  # why there is no ELBO / IW log-likelihood for this model
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "representation": "z = mean of q(z|x)"}


@torch.no_grad()
def reconstruction_error(
    model: Model,
    batches: Iterable[Batch],
    split: str,
    no_bound: str,
    progress: Callable[[Iterable[Batch]], Iterable[Batch]] | None = None,
) -> ReconstructionResult:
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    device = model.device
    layout = input_layout(model)
    recon_sum, sq_sum, n, pixels = 0.0, 0.0, 0, 0
    mus = []
    for x, y in progress(batches) if progress is not None else batches:
        x = x.to(device).contiguous(memory_format=layout)
        y = y.to(device) if model.conditional else None
        mu, _ = model.encode(x, y)
        params = model.decode(mu, y)
        recon_sum += -model.likelihood.log_prob(x, params).double().sum().item()
        sq_sum += (model.likelihood.mean(params).double() - x.double()).pow(2).sum().item()
        n += x.shape[0]
        pixels = x[0].numel()
        mus.append(mu.double().flatten(1))
    model.train(was_training)
    if n == 0:
        raise ValueError("reconstruction_error got no images")
    mu = torch.cat(mus)
    mu_var = mu.var(dim=0, unbiased=False) if n > 1 else torch.zeros(mu.shape[1], dtype=mu.dtype)
    return ReconstructionResult(
        split=split,
        num_images=n,
        recon=recon_sum / n,
        mse=sq_sum / (n * pixels),
        active_units=int((mu_var > ACTIVE_UNIT_THRESHOLD).sum().item()),
        active_threshold=ACTIVE_UNIT_THRESHOLD,
        mu_variance=mu_var.tolist(),
        no_bound=no_bound,
        seconds=round(time.perf_counter() - started, 3),
    )
