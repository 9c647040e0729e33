"""``loss=vaegan``: VAE-GAN (Larsen et al., 2016, "Autoencoding beyond pixels using a learned similarity metric").

A discriminator Dis on images; Dis_l(x) its features at one convolution (``loss.feature_layer``). With
x~ = Dec(z), z ~ q(z|x), and x_p = Dec(z_p), z_p ~ p(z) (images: the likelihood's mean):

    L_prior = KL(q(z|x) || p(z))
    L_llike = -log N(Dis_l(x); Dis_l(x~), I) = |Dis_l(x) - Dis_l(x~)|^2 / 2 + const   (per image, summed)
    L_GAN   = log Dis(x) + log(1 - Dis(x~)) + log(1 - Dis(x_p))

and the paper's updates (its Algorithm 1), which parameters each loss trains:

    encoder        <- grad of  beta * L_prior + L_llike
    decoder        <- grad of  gamma * L_llike - L_GAN          (-L_GAN as the non-saturating -log Dis(x~) - log Dis(x_p))
    discriminator  <- grad of  -L_GAN                           (never of L_llike: its features are not trained to agree)

All in one forward and one backward (``objectives/adversarial``): the decoder runs once on the live code (L_llike
reaches the encoder and the decoder with weight 1) and once on the detached code and the prior draws (the decoder's
remaining (gamma - 1) * L_llike and its fooling terms, which must not reach the encoder); every use of Dis by the
encoder or decoder stops its parameters, and Dis trains on detached images. ``pixel_recon`` (-log p(x|z) under the
model's likelihood) and ``elbo`` = -(pixel_recon + kl), the bound under it, are reported, not trained: the bound
vae-eval computes is the pixel model's, and best.pt keeps its best (``selection``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vae_cli.models.protocol import Model
from vae_cli.objectives.adversarial import DiscriminatorPasses, accuracy, discriminator_group, fooling_loss
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, kl_divergence


class ImageDiscriminator(nn.Module):
    """4x4 stride-2 convolutions (leaky ReLU), then one logit; ``forward`` also returns one convolution's output."""

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int], feature_layer: int) -> None:
        super().__init__()
        c, h, w = image_shape
        self.convs = nn.ModuleList()
        for out in channels:
            self.convs.append(nn.Conv2d(c, out, 4, stride=2, padding=1))
            c, h, w = out, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"{len(channels)} stride-2 convolutions do not fit images of {image_shape}")
        self.head = nn.Linear(c * h * w, 1)
        self.feature_layer = feature_layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = x
        for i, conv in enumerate(self.convs, start=1):
            x = F.leaky_relu(conv(x), 0.2)
            if i == self.feature_layer:
                features = x
        return self.head(x.flatten(1)).squeeze(1), features.flatten(1)


class VAEGAN(Objective):
    terms = ("loss", "recon", "kl", "pixel_recon", "elbo", "gen", "disc", "disc_acc")
    aux_terms = ("disc",)
    # The loss holds a game value and a reconstruction in the discriminator's moving features: best.pt keeps the
    # best pixel ELBO, the one number comparable across epochs.
    selection = ("elbo", -1.0)

    def __init__(self, cfg: Any, context: ObjectiveContext) -> None:
        super().__init__()
        self.gamma = float(cfg.gamma)
        self.beta = float(cfg.beta)
        self.disc_lr = float(cfg.disc_lr)
        self.disc_betas = tuple(float(b) for b in cfg.disc_betas)
        self.discriminator = ImageDiscriminator(
            context.image_shape, [int(c) for c in cfg.disc_channels], int(cfg.feature_layer)
        )

    def param_groups(self) -> list[dict[str, Any]]:
        return [discriminator_group(self.discriminator, self.disc_lr, self.disc_betas)]

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        b = x.shape[0]
        out = model(x, y)
        kl = kl_divergence(model, out).mean()
        pixel_recon = -model.likelihood.log_prob(x, out.params).mean()
        x_live = model.likelihood.mean(out.params)  # reaches the encoder (and the decoder)
        # The decoder alone: the detached code and prior draws (one decoder pass for both).
        z_p = model.prior_sample(b)
        y_both = None if y is None else torch.cat([y, y])
        x_dec, x_p = model.likelihood.mean(
            model.decode(torch.cat([out.z.detach(), z_p.to(out.z.dtype)]), y_both)
        ).split(b)
        images = torch.cat([x.float(), x_live, x_dec, x_p]).to(x_live.dtype)
        discriminator = DiscriminatorPasses(self.discriminator)
        logits, features = discriminator.frozen(images)
        features = features.float()
        f_real, f_live, f_dec, _ = features.split(b)
        recon = 0.5 * (f_live - f_real).pow(2).sum(dim=1).mean()
        recon_dec = 0.5 * (f_dec - f_real).pow(2).sum(dim=1).mean()
        _, _, l_dec, l_p = logits.float().split(b)
        gen = fooling_loss(l_dec) + fooling_loss(l_p)
        # The discriminator's own pass, on detached images.
        d_logits, _ = discriminator.trained(torch.cat([x.float(), x_dec.detach(), x_p.detach()]).to(x_live.dtype))
        d_real, d_rec, d_p = d_logits.float().split(b)
        disc = (
            F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_rec, torch.zeros_like(d_rec))
            + F.binary_cross_entropy_with_logits(d_p, torch.zeros_like(d_p))
        )
        loss = self.beta * kl + recon + (self.gamma - 1.0) * recon_dec + gen
        return {
            "loss": loss,
            "recon": recon,
            "kl": kl,
            "pixel_recon": pixel_recon,
            "elbo": -(pixel_recon + kl).detach(),
            "gen": gen,
            "disc": disc,
            "disc_acc": accuracy(d_real, torch.cat([d_rec, d_p])),
        }
