"""``model=vqvae``: encoder -> code grid -> decoder (van den Oord et al., 2017), with the flat VAE's interface.

A VQ-VAE is a VAE whose posterior is deterministic and one-hot, q(c|x) = 1 at the nearest codes c(x), with a
prior over the code grid: uniform while the VQ-VAE trains (so its KL is the constant h w log K) and a PixelCNN in
the second stage (``prior=pixelcnn prior.vqvae=RUN``). So

    -log p(x) <= -log p(x | c(x)) + KL(q || p) = -log p(x | c(x)) - log p(c(x))

is its ELBO, the "upper bound on the data NLL" that vae-eval reports (a bound wherever the likelihood is a proper
one). The ELBO objective trains it as any model: recon + KL, plus the model's own ``aux_losses`` (codebook,
commitment), and reports ``monitors`` (perplexity, the fraction of codes used).

The z the rest of vae-cli sees is the quantized grid flattened: ``encode`` gives it (with zero log-variances),
``decode`` maps any such vector through the decoder (interpolations pass between codes), ``prior_sample`` draws
codes from the prior and looks them up. Importance weights are the ELBO itself (the posterior has one point).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vae_cli.config.catalog import PRIORS
from vae_cli.models.likelihoods.base import Likelihood
from vae_cli.models.networks.residual import coarsest_shape, residual_stages_down, residual_stages_up
from vae_cli.models.pixelcnn import CodePrior, UniformCodePrior
from vae_cli.models.protocol import NoExtraTerms, VAEOutput
from vae_cli.models.quantizer import VectorQuantizer


class VQVAE(NoExtraTerms, nn.Module):
    num_classes = 0
    conditional = False
    layer_names: tuple[str, ...] = ()
    # One point of posterior mass: importance sampling has nothing to average (vae-eval uses K = 1).
    deterministic_posterior = True

    def __init__(
        self,
        encoder: nn.Module,
        quantizer: VectorQuantizer,
        decoder: nn.Module,
        likelihood: Likelihood,
        prior: CodePrior,
        grid: tuple[int, int],
        commitment: float = 0.25,
    ) -> None:
        super().__init__()
        self.encoder = encoder  # x -> z_e [B, D, h, w]
        self.quantizer = quantizer
        self._memo: tuple | None = None  # _quantized's last batch (evaluation only)
        self.decoder = decoder  # z_q [B, D, h, w] -> likelihood parameters
        self.likelihood = likelihood
        self.prior = prior
        self.grid = tuple(grid)
        self.commitment = float(commitment)
        self.code_dim = quantizer.dim
        self.latent_dim = quantizer.dim * math.prod(self.grid)

    # ----- what the objective adds and reports --------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        """The second stage: the VQ-VAE's weights are fixed and only its prior trains."""
        return self.quantizer.frozen

    @property
    def aux_loss_names(self) -> tuple[str, ...]:
        if self.frozen:
            return ()
        return ("commitment",) if self.quantizer.ema else ("codebook", "commitment")

    monitor_names = ("perplexity", "codes_used")

    @property
    def can_sample(self) -> bool:
        """Samples mean something only through a learned prior (uniform codes decode to noise)."""
        return self.prior.learned

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def codebook_size(self) -> int:
        return self.quantizer.size

    def condition(self, y: torch.Tensor | None) -> None:
        return None

    # ----- the codes ----------------------------------------------------------------------------------------
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The code grid of each image ``[B, h, w]``."""
        return self._quantized(x)[1]

    def _quantized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_q, codes)`` of ``x``. Evaluation asks for them three times per batch (the bound, the posterior's
        point, the code counts: a third of vae-eval's time each): without gradients and outside training, the
        last batch's are reused while it is the same tensor, unchanged, and the weights are unchanged."""
        key = (x._version, *(p._version for p in self._encoding_weights()))
        memo = self._memo
        if memo is not None and memo[0] is x and memo[1] == key:
            return memo[2], memo[3]
        z_q, codes, _ = self.quantizer(self.encoder(x))
        reuse = not self.training and not torch.is_grad_enabled()
        self._memo = (x, key, z_q, codes) if reuse else None
        return z_q, codes

    def _encoding_weights(self) -> list[torch.Tensor]:
        return [*self.encoder.parameters(), *self.quantizer.parameters(), *self.quantizer.buffers()]

    def _flat(self, z_q: torch.Tensor) -> torch.Tensor:
        return z_q.flatten(1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z.reshape(-1, self.code_dim, *self.grid))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(codes))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the quantized grid flattened, zeros): the posterior's one point."""
        z_q, _ = self._quantized(x)
        flat = self._flat(z_q)
        return flat, torch.zeros_like(flat)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> VAEOutput:
        z_e = self.encoder(x)
        z_q, codes, terms = self.quantizer(z_e)
        if "codebook" not in self.aux_loss_names:
            terms.pop("codebook", None)
        if self.frozen:
            terms.pop("commitment", None)
        else:
            terms["commitment"] = self.commitment * terms["commitment"]
        flat = self._flat(z_q)
        return VAEOutput(
            params=self.decoder(z_q),
            mu=self._flat(z_e),
            logvar=torch.zeros_like(flat),
            z=flat,
            extras={"codes": codes, **terms},
        )

    def aux_losses(self, out: VAEOutput) -> dict[str, torch.Tensor]:
        assert out.extras is not None
        return {name: out.extras[name] for name in self.aux_loss_names}

    def monitors(self, out: VAEOutput) -> dict[str, torch.Tensor]:
        assert out.extras is not None
        return {name: out.extras[name] for name in self.monitor_names}

    def kl(self, out: VAEOutput) -> torch.Tensor:
        """KL(q(c|x) || p(c)) = -log p(c(x)) for a one-hot posterior."""
        assert out.extras is not None
        return self.prior.nll(out.extras["codes"])

    def kl_layers(self, out: VAEOutput) -> torch.Tensor:
        return out.mu.new_zeros(out.mu.shape[0], 0)

    def closed_form_kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        return None

    def log_weights(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        eps: torch.Tensor,
        stop_q: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every one of the K "samples" is the posterior's one point: log q = 0, log p(c) from the prior."""
        k = eps.shape[0]
        z_q, codes = self._quantized(x)
        log_px_z = self.likelihood.log_prob(x, self.decoder(z_q))
        log_pz = -self.prior.nll(codes)
        flat = self._flat(z_q)
        expand = lambda t: t.unsqueeze(0).expand(k, *t.shape)  # noqa: E731
        return expand(log_px_z), expand(log_pz), torch.zeros_like(expand(log_px_z)), expand(flat)

    # ----- generation ---------------------------------------------------------------------------------------
    def prior_sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        codes = self.prior.sample(n, generator=generator, temperature=temperature, device=self.device)
        return self._flat(self.quantizer.lookup(codes))

    @torch.no_grad()
    def sample(self, n: int, generator=None, y=None, temperature: float = 1.0) -> torch.Tensor:
        return self.decode(self.prior_sample(n, generator, temperature))

    def freeze_autoencoder(self) -> None:
        """Second stage: the encoder, codebook and decoder stay as trained; only the prior learns."""
        self.quantizer.frozen = True
        for module in (self.encoder, self.quantizer, self.decoder, self.likelihood):
            for p in module.parameters():
                p.requires_grad_(False)


def build(
    cfg: Any, image_shape: tuple[int, int, int], likelihood: Likelihood, num_classes: int = 0, init_images=None
) -> VQVAE:
    """``model=vqvae`` for images of ``image_shape``: the residual backbone of model=resnet down to a grid of
    ``code_dim``-dimensional vectors, quantized against ``codebook_size`` codes, and back; its prior is the uniform
    one over codes, or a prior over codes (``prior=pixelcnn``: the second stage)."""
    cfg, prior_cfg = cfg.model, cfg.prior
    widths, blocks = list(cfg.widths), int(cfg.blocks)
    _, h, w = coarsest_shape(image_shape, widths)
    d = int(cfg.code_dim)
    encoder = nn.Sequential(
        residual_stages_down(image_shape[0], widths, blocks), nn.SiLU(), nn.Conv2d(widths[-1], d, 1)
    )
    decoder = nn.Sequential(
        nn.Conv2d(d, widths[-1], 3, padding=1),
        residual_stages_up(likelihood.param_channels(image_shape[0]), widths, blocks),
    )
    quantizer = VectorQuantizer(
        int(cfg.codebook_size),
        d,
        ema=bool(cfg.ema),
        decay=float(cfg.ema_decay),
        restart_dead=bool(cfg.restart_dead_codes),
    )
    if PRIORS[prior_cfg.name].code_prior:
        prior: CodePrior = PRIORS.load(prior_cfg.name)(prior_cfg, int(cfg.codebook_size), (h, w))
    else:
        prior = UniformCodePrior(int(cfg.codebook_size), (h, w))
    model = VQVAE(encoder, quantizer, decoder, likelihood, prior, (h, w), commitment=float(cfg.commitment))
    if prior.learned:
        # A learned prior over the codes is the second stage: the VQ-VAE itself (loaded from its run) stays fixed.
        model.freeze_autoencoder()
    return model
