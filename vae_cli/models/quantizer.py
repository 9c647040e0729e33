"""Vector quantization (van den Oord et al., 2017): each encoder output vector is replaced by its nearest codebook
entry, with the straight-through gradient, and the codebook learns by a loss or by exponential moving averages.

    codes     c_i = argmin_k |z_e,i - e_k|^2
    forward   z_q = e_c;   backward: dz_e = dz_q   (straight through: z_e + sg[z_q - z_e])
    codebook  |sg[z_e] - z_q|^2      trains the codebook only (absent with ema=true, where
                                     N_k <- g N_k + (1 - g) n_k,  m_k <- g m_k + (1 - g) sum_{c_i = k} z_e,i,
                                     e_k = m_k / N~_k with Laplace smoothing N~_k = (N_k + eps) / (N + K eps) N)
    commitment beta |z_e - sg[z_q]|^2   trains the encoder only (beta = 0.25: the paper's)

Both terms are sums over the code grid and the code dimensions, per image, so they are in the same per-image units
as the reconstruction's nats (the implementations that mix a mean here with a sum there weigh them by accident).
Dead codes (unused for ~hundreds of steps: an EMA of their assignments per batch below ``DEAD_USAGE``) restart at
random encoder outputs of the current batch, so the codebook does not collapse onto a few entries. Everything runs
on the device, without a host sync; under torchrun the counts and sums are all-reduced and the restart candidates
come from rank 0, so every rank keeps the same codebook.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as torch_dist
from torch import nn

# A code whose EMA of assignments per batch falls below this is dead (it starts at 1: ~460 unused steps at 0.99).
DEAD_USAGE = 0.01
USAGE_DECAY = 0.99


def _distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    def __init__(
        self,
        size: int,
        dim: int,
        ema: bool = False,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        restart_dead: bool = True,
    ) -> None:
        super().__init__()
        self.size, self.dim = int(size), int(dim)
        self.ema, self.decay, self.epsilon = bool(ema), float(decay), float(epsilon)
        self.restart_dead = bool(restart_dead)
        # Frozen: a second stage (a prior over the codes) uses the codebook as it is: no updates of any kind.
        self.frozen = False
        init = torch.empty(self.size, self.dim).uniform_(-1.0 / self.size, 1.0 / self.size)
        if self.ema:
            # Counts start at 1, not 0: with 0, a code unused at the first step gets e = m / (Laplace epsilon), a
            # vector thousands of times too long that nothing is ever assigned to again.
            self.register_buffer("embedding", init)
            self.register_buffer("cluster_size", torch.ones(self.size))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.embedding = nn.Parameter(init)
        self.register_buffer("usage", torch.ones(self.size))

    def distances(self, flat: torch.Tensor) -> torch.Tensor:
        """|z - e_k|^2 for every row of ``flat`` ``[N, D]`` and code k: ``[N, K]`` (expanded as a matrix product)."""
        e = self.embedding.float()
        return flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.T + e.pow(2).sum(1)

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``z_e`` ``[B, D, h, w]`` -> (straight-through z_q ``[B, D, h, w]``, codes ``[B, h, w]``, terms): the
        per-image-mean ``codebook`` (without EMA) and unweighted ``commitment`` losses, and the batch's
        ``perplexity`` and ``codes_used`` (fraction of the codebook)."""
        b, d, h, w = z_e.shape
        with torch.autocast(z_e.device.type, enabled=False):
            z = z_e.float()
            flat = z.permute(0, 2, 3, 1).reshape(-1, d)
            codes = self.distances(flat.detach()).argmin(dim=1)
            counts = torch.bincount(codes, minlength=self.size).float()
            if self.training and not self.frozen:
                self._learn(flat.detach(), codes, counts)
            z_q = self.embedding.float()[codes].view(b, h, w, d).permute(0, 3, 1, 2)
            terms = {"commitment": (z - z_q.detach()).pow(2).flatten(1).sum(1).mean()}
            if not self.ema:
                terms["codebook"] = (z.detach() - z_q).pow(2).flatten(1).sum(1).mean()
            probs = counts / counts.sum()
            terms["perplexity"] = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum())
            terms["codes_used"] = (counts > 0).float().mean()
            straight_through = z + (z_q - z).detach()
        return straight_through.to(z_e.dtype), codes.view(b, h, w), terms

    @torch.no_grad()
    def _learn(self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros(self.size, self.dim, device=flat.device).index_add_(0, codes, flat)
        if _distributed():
            torch_dist.all_reduce(counts)
            torch_dist.all_reduce(sums)
        if self.ema:
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.epsilon) / (total + self.size * self.epsilon) * total
            self.embedding.copy_(self.embed_sum / smoothed.unsqueeze(1))
        self.usage.mul_(USAGE_DECAY).add_(counts, alpha=1 - USAGE_DECAY)
        if self.restart_dead:
            self._restart(flat)

    def _restart(self, flat: torch.Tensor) -> None:
        dead = self.usage < DEAD_USAGE
        candidates = flat[torch.randint(0, flat.shape[0], (self.size,), device=flat.device)]
        if _distributed():
            torch_dist.broadcast(candidates, 0)
        mask = dead.unsqueeze(1)
        self.embedding.data.copy_(torch.where(mask, candidates, self.embedding.data))
        self.usage.copy_(torch.where(dead, torch.ones_like(self.usage), self.usage))
        if self.ema:
            self.embed_sum.copy_(torch.where(mask, candidates, self.embed_sum))
            self.cluster_size.copy_(torch.where(dead, torch.ones_like(self.cluster_size), self.cluster_size))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, h, w]`` -> their vectors ``[B, D, h, w]``."""
        return self.embedding[codes].permute(0, 3, 1, 2)

    def uniform_code_nll(self, positions: int) -> float:
        """-log p(c) of any code grid under the uniform prior: positions x log K nats."""
        return positions * math.log(self.size)
