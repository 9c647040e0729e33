"""beta-TCVAE's minibatch densities: autograd on the broadcast expression against the hand-written function.

    python benchmarks/tc_densities.py [--batch 128] [--dim 20] [--reps 15]

Forward + backward of ``log_q_estimates`` (MSS weights) on one batch, both versions interleaved, medians and their
ratio printed; the values of the two are compared first (they compute the same expression).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vae_cli.models.priors import diag_normal_log_prob
from vae_cli.objectives.beta_tcvae import log_q_estimates, stratified_log_weights


def autograd_version(z, mu, logvar, n):
    """The expression as autograd sees it: the [B, B, D] tensor, logsumexp over its middle axis."""
    pairwise = diag_normal_log_prob(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    own = pairwise.diagonal(dim1=0, dim2=1).sum(dim=0)
    log_w = stratified_log_weights(z.shape[0], n)
    joint = torch.logsumexp(log_w + pairwise.sum(-1), dim=1)
    return own, joint, torch.logsumexp(log_w[:, :, None] + pairwise, dim=1).sum(-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dim", type=int, default=20)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args()
    n = 60_000
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(args.batch, args.dim, generator=g).requires_grad_()
    logvar = (0.3 * torch.randn(args.batch, args.dim, generator=g)).requires_grad_()
    z = (mu + (0.5 * logvar).exp() * torch.randn(args.batch, args.dim, generator=g)).detach().requires_grad_()
    versions = {
        "autograd": lambda: autograd_version(z, mu, logvar, n),
        "hand-written": lambda: log_q_estimates(z, mu, logvar, n, "mss"),
    }
    for a, b in zip(versions["autograd"](), versions["hand-written"](), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-3)

    def step(fn):
        own, joint, marginals = fn()
        (own.mean() + 2 * joint.mean() - 3 * marginals.mean()).backward()

    for fn in versions.values():
        for _ in range(20):
            step(fn)
    times: dict[str, list[float]] = {name: [] for name in versions}
    for _ in range(args.reps):
        for name, fn in versions.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(fn)
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
    a, b = statistics.median(times["autograd"]), statistics.median(times["hand-written"])
    print(
        f"B={args.batch} D={args.dim}, {torch.get_num_threads()} threads, forward + backward, median of {args.reps}: "
        f"autograd {a:.2f} ms, hand-written {b:.2f} ms, {a / b:.2f}x"
    )


if __name__ == "__main__":
    main()
