"""The objectives' pairwise terms over a batch, each against the autograd version it replaced, side by side.

    python benchmarks/pairwise_terms.py [--batch 128] [--dim 20] [--reps 15]

- beta-TCVAE's minibatch densities (``objectives/minibatch_densities.py``, MSS weights) against autograd on the
  broadcast [B, B, D] expression;
- the MMD of InfoVAE and WAE (``objectives/mmd.py``: one kernel matrix over [z; p], |a|^2 + |b|^2 - 2ab, and a
  closed-form backward) against autograd through three kernel matrices (the version it replaced), with one IMQ scale
  (InfoVAE) and seven (WAE).

Forward + backward on one batch, the two versions interleaved, medians and their ratio printed; the values of the
two are compared first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from vae_cli.models.priors import diag_normal_log_prob
from vae_cli.objectives import mmd
from vae_cli.objectives.beta_tcvae import log_q_estimates, stratified_log_weights


def autograd_densities(z, mu, logvar, n):
    """The expression as autograd sees it: the [B, B, D] tensor, logsumexp over its middle axis."""
    pairwise = diag_normal_log_prob(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    own = pairwise.diagonal(dim1=0, dim2=1).sum(dim=0)
    log_w = stratified_log_weights(z.shape[0], n)
    joint = torch.logsumexp(log_w + pairwise.sum(-1), dim=1)
    return own, joint, torch.logsumexp(log_w[:, :, None] + pairwise, dim=1).sum(-1)


def autograd_mmd(z: torch.Tensor, p: torch.Tensor, scales: float | list[float]) -> torch.Tensor:
    """The unbiased MMD as autograd sees it: the z-z, p-p and z-p IMQ kernel matrices (the version before
    ``mmd.UnbiasedMMD``)."""
    c = torch.tensor(scales).view(-1, 1, 1) if isinstance(scales, list) else scales

    def k(a, b):
        sq = mmd.squared_distances(a, b)
        out = c / (c + sq)
        return out.sum(0) if isinstance(scales, list) else out

    n, m = z.shape[0], p.shape[0]
    kzz, kpp, kzp = k(z, z), k(p, p), k(z, p)
    within = (kzz.sum() - kzz.diagonal().sum()) / (n * (n - 1)) + (kpp.sum() - kpp.diagonal().sum()) / (m * (m - 1))
    return within - 2 * kzp.mean()


def side_by_side(name: str, versions: dict[str, Callable], reps: int, steps: int) -> None:
    outs = [fn() for fn in versions.values()]
    for a, b in zip(*(o if isinstance(o, tuple) else (o,) for o in outs), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)

    def step(fn):
        out = fn()
        out = out if isinstance(out, tuple) else (out,)
        sum((i + 1) * o.mean() for i, o in enumerate(out)).backward()

    for fn in versions.values():
        for _ in range(10):
            step(fn)
    times: dict[str, list[float]] = {label: [] for label in versions}
    for _ in range(reps):
        for label, fn in versions.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step(fn)
            times[label].append((time.perf_counter() - t0) / steps * 1e3)
    (old, a), (new, b) = ((label, statistics.median(t)) for label, t in times.items())
    print(f"{name}: {old} {a:.2f} ms, {new} {b:.2f} ms, {a / b:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dim", type=int, default=20)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args()
    n = 60_000
    g = torch.Generator().manual_seed(0)
    b, d = args.batch, args.dim
    mu = torch.randn(b, d, generator=g).requires_grad_()
    logvar = (0.3 * torch.randn(b, d, generator=g)).requires_grad_()
    z = (mu + (0.5 * logvar).exp() * torch.randn(b, d, generator=g)).detach().requires_grad_()
    prior = torch.randn(b, d, generator=g)
    print(f"B={b} D={d}, {torch.get_num_threads()} threads, forward + backward, median of {args.reps}")
    side_by_side(
        "beta-TCVAE densities",
        {
            "autograd": lambda: autograd_densities(z, mu, logvar, n),
            "hand-written": lambda: log_q_estimates(z, mu, logvar, n, "mss"),
        },
        args.reps,
        args.steps,
    )
    c = 2.0 * d
    wae_scales = [c * s for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)]
    for label, scales in (("MMD, 1 IMQ scale", c), ("MMD, 7 IMQ scales", wae_scales)):
        side_by_side(
            label,
            {
                "autograd": lambda scales=scales: autograd_mmd(z, prior, scales),
                "closed-form": lambda scales=scales: mmd.mmd_unbiased(z, prior, "imq", scales),
            },
            args.reps,
            args.steps,
        )


if __name__ == "__main__":
    main()
