"""Which way a metric is better: one rule for early stopping (training), the sweep summary's "best" and
vae-compare's ranking (runs/sweeps/metrics.py)."""

from __future__ import annotations

# Metrics whose larger values are better: bounds on log p(x) (the ELBO, log p(x)), used latent units, the
# disentanglement scores and the samples' precision and recall; every other metric (losses, -log p(x), bits/dim,
# FID, KID) is better smaller.
HIGHER_IS_BETTER_WORDS = ("elbo", "log_px", "active_units", "disentanglement/", "/precision", "/recall")


def higher_is_better(metric: str) -> bool:
    return any(word in metric for word in HIGHER_IS_BETTER_WORDS)
