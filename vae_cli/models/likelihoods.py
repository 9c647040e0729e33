"""Likelihoods p(x|z): ``log_prob(x, params)`` per image, ``mean(params)`` (the image shown for reconstructions and
samples) and ``sample(params)``. The decoder's output is ``params``: ``param_channels(C)`` channels per pixel of a
C-channel image (C for Bernoulli and fixed-σ Gaussians; 2C for a per-pixel σ; 10K for K coupled RGB logistics).

Every likelihood says what its ``-log p(x|z)`` measures (``measures``), which decides what bits/dim means:

- ``probability``: a probability of the data's discrete values (Bernoulli on binarized pixels, the discretized
  logistic mixture on 256 levels): bits/dim = nll / (D ln 2);
- ``density``: a density on [0, 1]-scaled pixels (Gaussian, continuous Bernoulli): bits/dim on the 8-bit scale is
  nll / (D ln 2) + 8 (Theis et al., 2016: an upper bound on the discrete data's bits/dim when trained and
  evaluated on uniformly dequantized pixels);
- ``cross_entropy``: Bernoulli on grey levels, the classic VAE: not a normalized likelihood of anything.

Sums over pixels are taken in float32 even under autocast: 784+ pixels lose too much in half precision.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vae_cli.config import LikelihoodName

# Below this |logit| the continuous Bernoulli's normalizer and moments use their Taylor series: the closed forms
# are 0/0 at logit 0. At 0.1 the series' first omitted term is < 4e-10.
CB_TAYLOR_BELOW = 0.1
# PixelCNN++'s floor on log-scales: a scale of e^-7 already puts > 99% of a logistic's mass in one 8-bit bin.
MIN_LOG_SCALE = -7.0
LEVELS = 256  # 8-bit data
HALF_BIN = 1.0 / (LEVELS - 1)  # half a bin's width, with the levels k/255 mapped to [-1, 1]


class Measures(str, Enum):
    probability = "probability"
    density = "density"
    cross_entropy = "cross_entropy"


class _BCEWithLogitsPerSample(torch.autograd.Function):
    """Per-sample sum of BCE-with-logits, with a hand-written backward: the same function as
    ``F.binary_cross_entropy_with_logits(reduction="none").flatten(1).sum(1)``, about twice as fast on CPU.

    Why: ATen's CPU ``log1p`` (inside softplus/log_sigmoid) is not vectorized and cost ~10% of a whole MLP step,
    and autograd saves and replays the whole chain. Here the forward uses the stable identity
    ``softplus(l) - x l = max(l, 0) - x l + log(1 + exp(-|l|))`` (``log`` of a value in (1, 2]: vectorized; it
    differs from ``log1p`` by < 1e-7 per pixel), and the backward is the closed form ``sigmoid(l) - x``.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(logits, x)
        nll = logits.abs().neg_().exp_().add_(1.0).log_()
        nll += logits.clamp_min(0.0)
        nll -= x * logits
        return nll.flatten(1).sum(dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        logits, x = ctx.saved_tensors
        shape = (-1,) + (1,) * (logits.dim() - 1)
        grad_logits = torch.sigmoid(logits).sub_(x).mul_(grad.reshape(shape))
        # d/dx of the cross-entropy is -logits; x is data in training, but stay correct if it needs a gradient.
        grad_x = -logits * grad.reshape(shape) if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


class Likelihood(nn.Module):
    """The contract every likelihood follows (a module, so a learned parameter is saved with the model)."""

    measures: Measures = Measures.density

    def param_channels(self, channels: int) -> int:
        """Channels of the decoder's output for images of ``channels`` channels."""
        return channels

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x | params) per image, ``[B]``, float32."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The expected image, in [0, 1]."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


def _uniform(params: torch.Tensor, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
    """U(0, 1) draws made on the generator's device, moved to the parameters' device."""
    device = generator.device if generator is not None else params.device
    return torch.rand(shape, generator=generator, device=device).to(params.device)


class BernoulliLikelihood(Likelihood):
    """p(x|z) = prod Bernoulli(x; sigmoid(logits)); x in [0, 1] (the classic VAE also uses grey levels)."""

    def __init__(self, binarized: bool = True) -> None:
        super().__init__()
        # On grey levels the Bernoulli "likelihood" is a cross-entropy, not a probability of the data.
        self.measures = Measures.probability if binarized else Measures.cross_entropy

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        # BCE-with-logits is the numerically stable form of x log p + (1 - x) log(1 - p).
        return -_BCEWithLogitsPerSample.apply(params.float(), x.float())

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params.float())

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.mean(params)
        return (_uniform(params, p.shape, generator) < p).float()


def _small_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mask of |l| < CB_TAYLOR_BELOW, l with the small ones replaced by 1 for the closed forms, l for the series).

    The double ``where`` keeps the gradients of the unused branch finite (a NaN there would leak through
    ``torch.where``'s backward)."""
    small = logits.abs() < CB_TAYLOR_BELOW
    far = torch.where(small, torch.ones_like(logits), logits)
    near = torch.where(small, logits, torch.zeros_like(logits))
    return small, far, near


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(λ) of the continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019), λ = sigmoid(l).

    C(λ) = 2 atanh(1 - 2λ) / (1 - 2λ), which in logits is l / tanh(l / 2): no 1 - 2λ cancellation, so the closed
    form is accurate down to |l| = 0.1; below, log C = log 2 + l²/12 - 7 l⁴/1440 (+ O(l⁶))."""
    small, far, near = _small_logits(logits)
    # l / tanh(l/2) > 0 for every l != 0; written with |l| and |tanh| so the log's argument is a positive ratio.
    closed = torch.log(far.abs()) - torch.log(torch.tanh(far.abs() / 2))
    series = math.log(2.0) + near.pow(2) / 12 - 7 * near.pow(4) / 1440
    return torch.where(small, series, closed)


class ContinuousBernoulliLikelihood(Likelihood):
    """p(x|λ) = C(λ) λ^x (1 - λ)^(1 - x) on x in [0, 1], λ = sigmoid(decoder(z)): the normalized version of the
    Bernoulli-on-grey-levels "likelihood". Reconstructions and samples show its mean, which is not λ."""

    measures = Measures.density

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        logits = params.float()
        # x log λ + (1 - x) log(1 - λ) = -(BCE-with-logits), then + log C(λ).
        return -_BCEWithLogitsPerSample.apply(logits, x.float()) + continuous_bernoulli_log_norm(logits).flatten(1).sum(
            dim=1
        )

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        # E[x] = λ / (2λ - 1) + 1 / (2 atanh(1 - 2λ)) = sigmoid(l) / tanh(l/2) - 1/l; near 0: 1/2 + l/12 - l³/720.
        logits = params.float()
        small, far, near = _small_logits(logits)
        closed = torch.sigmoid(far) / torch.tanh(far / 2) - 1 / far
        series = 0.5 + near / 12 - near.pow(3) / 720
        return torch.where(small, series, closed).clamp(0, 1)

    def variance(self, params: torch.Tensor) -> torch.Tensor:
        # Var[x] = λ(λ - 1) / (1 - 2λ)² + 1 / (2 atanh(1 - 2λ))² = 1/l² - 1 / (4 sinh²(l/2)); near 0: 1/12 - l²/240.
        logits = params.float()
        small, far, near = _small_logits(logits)
        closed = far.pow(-2) - 0.25 / torch.sinh(far / 2).pow(2)
        series = 1 / 12 - near.pow(2) / 240 + near.pow(4) / 6048
        return torch.where(small, series, closed)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # Inverse CDF: x = log(1 + u (e^l - 1)) / l, written as 1 + log(u + (1 - u) e^-l) / l for l > 0 (no
        # overflow of e^l); x = u at l = 0.
        logits = params.float()
        u = _uniform(params, logits.shape, generator)
        small, far, _ = _small_logits(logits)
        neg = torch.log1p(u * torch.expm1(far.clamp(max=0))) / far
        pos = 1 + torch.log(u + (1 - u) * torch.exp(-far.clamp(min=0))) / far
        x = torch.where(far > 0, pos, neg)
        return torch.where(small, u, x).clamp(0, 1)


class GaussianStd(str, Enum):
    learned = "learned"  # per pixel: the decoder outputs a σ for every pixel, next to the mean
    learned_global = "learned_global"  # one σ for every pixel and image, a parameter of the model


class GaussianLikelihood(Likelihood):
    """p(x|z) = prod N(x; mean, σ²) in pixel units, with σ fixed, learned globally, or output by the decoder per pixel.

    A learned σ is ``min_std + softplus(raw)``: bounded below, so it cannot collapse to 0 (a density spike on one
    grey level, a loss going to -inf and then NaN); pair it with ``dataset.dequantize=true``.
    """

    measures = Measures.density

    def __init__(self, std: float | GaussianStd, min_std: float = 1e-3, init_std: float = 0.1) -> None:
        super().__init__()
        self.min_std = float(min_std)
        self.kind = std if isinstance(std, GaussianStd) else None
        self.fixed_std = None if self.kind is not None else float(std)
        # softplus(raw) = init_std - min_std at the start.
        raw = math.log(math.expm1(max(init_std - self.min_std, 1e-6)))
        self.raw_offset = raw
        if self.kind == GaussianStd.learned_global:
            self.raw_std = nn.Parameter(torch.tensor(raw))

    def param_channels(self, channels: int) -> int:
        return 2 * channels if self.kind == GaussianStd.learned else channels

    def mean_and_std(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        params = params.float()
        if self.kind == GaussianStd.learned:
            mean, raw = params.chunk(2, dim=1)
            # The offset makes a decoder output of 0 mean σ = init_std.
            return mean, self.min_std + F.softplus(raw + self.raw_offset)
        if self.kind == GaussianStd.learned_global:
            return params, self.min_std + F.softplus(self.raw_std.float())
        assert self.fixed_std is not None
        return params, self.fixed_std

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_and_std(params)
        std_t = torch.as_tensor(std, device=mean.device, dtype=mean.dtype)
        sq = ((x.float() - mean) / std_t).pow(2)
        log_norm = torch.log(std_t) + 0.5 * math.log(2 * math.pi)
        return -(0.5 * sq + log_norm).flatten(1).sum(dim=1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self.mean_and_std(params)[0].clamp(0, 1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, std = self.mean_and_std(params)
        device = generator.device if generator is not None else mean.device
        noise = torch.randn(mean.shape, generator=generator, device=device).to(mean.device)
        return (mean + std * noise).clamp(0, 1)


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
        u = _uniform(params, logits.shape, generator).clamp(1e-6, 1 - 1e-6)
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
            v = _uniform(params, m.shape, generator).clamp(1e-6, 1 - 1e-6)
            y = (m + s_all[:, ch] * (torch.log(v) - torch.log1p(-v))).clamp(-1, 1)
            values.append(torch.round((y + 1) / 2 * (LEVELS - 1)) / (LEVELS - 1) * 2 - 1)
        return (torch.stack(values, dim=1) + 1) / 2


def parse_gaussian_std(value: str) -> float | GaussianStd:
    """``likelihood.std``: a number (fixed σ), ``learned`` or ``learned_global``. Raises ValueError otherwise."""
    text = str(value).strip()
    if text in GaussianStd.__members__:
        return GaussianStd(text)
    return float(text)


def build_likelihood(cfg: Any, binarized: bool = False) -> Likelihood:
    """The likelihood the ``likelihood`` group names; ``binarized``: the data are 0/1 pixels (a Bernoulli is then
    a probability of them, not a cross-entropy against grey levels)."""
    name = LikelihoodName(cfg.name)
    if name == LikelihoodName.bernoulli:
        return BernoulliLikelihood(binarized=binarized)
    if name == LikelihoodName.continuous_bernoulli:
        return ContinuousBernoulliLikelihood()
    if name == LikelihoodName.logistic_mixture:
        return LogisticMixtureLikelihood(int(cfg.components))
    return GaussianLikelihood(parse_gaussian_std(cfg.std), min_std=float(cfg.min_std))
