"""``likelihood=logistic_mixture``: discretized logistic mixtures on 8-bit pixels (PixelCNN++)."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from vae_cli.models.likelihoods.base import Likelihood, Measures, uniform_draws

# PixelCNN++'s floor on log-scales: a scale of e^-7 already puts > 99% of a logistic's mass in one 8-bit bin.
MIN_LOG_SCALE = -7.0
LEVELS = 256  # 8-bit data
HALF_BIN = 1.0 / (LEVELS - 1)  # half a bin's width, with the levels k/255 mapped to [-1, 1]


def _log_sigmoid(t: torch.Tensor) -> torch.Tensor:
    return -F.softplus(-t)


class LogisticMixtureLikelihood(Likelihood):
    """A mixture of K discretized logistics on 256 levels per pixel, colour channels coupled (Salimans et al.,
    2017, PixelCNN++): within component k, the means of channel c are shifted linearly by the channels before it,
    mu_G = mu_G + a·x_R, mu_B = mu_B + b·x_R + c·x_G, so the channels of one pixel are not independent.

    Pixels x = v/255 are mapped to [-1, 1]; level v gets the logistic's mass on [x - 1/255, x + 1/255], level 0 all
    the mass below 1/255 - 1 and level 255 all the mass above 1 - 1/255, so the 256 probabilities sum to 1. The
    bin mass is computed as log σ(a) + log σ(-b) + log(1 - e^(b - a)) (σ(a) - σ(b) factored): exact in every bin,
    without the 1e-5 cut-over to a density PixelCNN++ needs for its difference of sigmoids.

    ``params`` per pixel: K mixture logits, then for each channel K means and K log-scales, then K coefficients per
    coupled pair (C(C-1)/2 pairs, tanh-bounded): 3K channels for grey images, 10K for RGB.
    """

    measures = Measures.probability

    def __init__(self, components: int) -> None:
        super().__init__()
        self.k = int(components)

    def param_channels(self, channels: int) -> int:
        return self.k * (1 + 2 * channels + channels * (channels - 1) // 2)

    def _split(
        self, params: torch.Tensor, channels: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [B, K, H, W], means [B, C, K, H, W], log-scales [B, C, K, H, W], coefficients [B, P, K, H, W])."""
        b, _, h, w = params.shape
        k, c = self.k, channels
        p = params.float()
        logits = p[:, :k]
        rest = p[:, k:]
        means = rest[:, : c * k].reshape(b, c, k, h, w)
        log_scales = rest[:, c * k : 2 * c * k].reshape(b, c, k, h, w).clamp(min=MIN_LOG_SCALE)
        coeffs = torch.tanh(rest[:, 2 * c * k :].reshape(b, -1, k, h, w))
        return logits, means, log_scales, coeffs

    @staticmethod
    def _coupled(means: torch.Tensor, coeffs: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """The means of every channel given the values ``prev`` [B, C, H, W] (in [-1, 1]) of the channels before it."""
        c = means.shape[1]
        out = [means[:, 0]]
        pair = 0
        for ch in range(1, c):
            m = means[:, ch]
            for before in range(ch):
                m = m + coeffs[:, pair] * prev[:, before].unsqueeze(1)
                pair += 1
            out.append(m)
        return torch.stack(out, dim=1)

    def _channels(self, params: torch.Tensor) -> int:
        per_channel = {self.param_channels(c): c for c in (1, 2, 3, 4)}
        if params.shape[1] not in per_channel:
            raise ValueError(f"{params.shape[1]} parameter channels do not fit a {self.k}-component mixture")
        return per_channel[params.shape[1]]

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        logits, means, log_scales, coeffs = self._split(params, c)
        xs = x.float() * 2 - 1  # [B, C, H, W] in [-1, 1]
        centered = xs.unsqueeze(2) - self._coupled(means, coeffs, xs)  # [B, C, K, H, W]
        inv_s = torch.exp(-log_scales)
        upper = inv_s * (centered + HALF_BIN)
        lower = inv_s * (centered - HALF_BIN)
        log_mid = _log_sigmoid(upper) + _log_sigmoid(-lower) + torch.log(-torch.expm1(-2 * HALF_BIN * inv_s))
        level = xs.unsqueeze(2)
        log_bin = torch.where(
            level < -1 + HALF_BIN, _log_sigmoid(upper), torch.where(level > 1 - HALF_BIN, _log_sigmoid(-lower), log_mid)
        )
        # Channels of one component multiply (their coupling is in the means); components mix.
        per_component = log_bin.sum(dim=1) + torch.log_softmax(logits, dim=1)  # [B, K, H, W]
        return torch.logsumexp(per_component, dim=1).flatten(1).sum(dim=1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Σ_k π_k E_k[x]: each component's clamped-logistic mean E[clamp(Y, -1, 1)] = -1 + s (softplus((m + 1)/s) -
        softplus((m - 1)/s)), the coupling applied to the component's own means of the channels before. Exact for
        grey images up to the rounding to levels (< half a level); for colour the coupling is linear, so only the
        clamping's curvature makes it approximate."""
        c = self._channels(params)
        logits, means, log_scales, coeffs = self._split(params, c)
        s = torch.exp(log_scales)
        expected: list[torch.Tensor] = []
        pair = 0
        for ch in range(c):
            m = means[:, ch]
            for before in range(ch):
                m = m + coeffs[:, pair] * expected[before]
                pair += 1
            sc = s[:, ch]
            expected.append(-1 + sc * (F.softplus((m + 1) / sc) - F.softplus((m - 1) / sc)))
        weights = torch.softmax(logits, dim=1)  # [B, K, H, W]
        per_channel = torch.stack(expected, dim=1)  # [B, C, K, H, W]
        return ((per_channel * weights.unsqueeze(1)).sum(dim=2) + 1) / 2

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per pixel: a component (Gumbel-max), then each channel's logistic in turn, clamped to [-1, 1],
        rounded to its level, and fed to the next channel's mean."""
        c = self._channels(params)
        logits, means, log_scales, coeffs = self._split(params, c)
        u = uniform_draws(params, logits.shape, generator).clamp(1e-6, 1 - 1e-6)
        choice = (logits - torch.log(-torch.log(u))).argmax(dim=1, keepdim=True)  # [B, 1, H, W]

        def pick(t: torch.Tensor) -> torch.Tensor:  # [B, C', K, H, W] -> [B, C', H, W] at the chosen component
            return t.gather(2, choice.unsqueeze(1).expand(-1, t.shape[1], -1, -1, -1)).squeeze(2)

        m_all, s_all = pick(means), torch.exp(pick(log_scales))
        a_all = pick(coeffs) if coeffs.shape[1] else coeffs[:, :, 0]
        values: list[torch.Tensor] = []
        pair = 0
        for ch in range(c):
            m = m_all[:, ch]
            for before in range(ch):
                m = m + a_all[:, pair] * values[before]
                pair += 1
            v = uniform_draws(params, m.shape, generator).clamp(1e-6, 1 - 1e-6)
            y = (m + s_all[:, ch] * (torch.log(v) - torch.log1p(-v))).clamp(-1, 1)
            values.append(torch.round((y + 1) / 2 * (LEVELS - 1)) / (LEVELS - 1) * 2 - 1)
        return (torch.stack(values, dim=1) + 1) / 2


def build(cfg: Any, binarized: bool = False) -> Likelihood:
    return LogisticMixtureLikelihood(int(cfg.components))
