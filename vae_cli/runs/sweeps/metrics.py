"""Which metrics rank a sweep, and which way: read by vae-compare and its ``--help`` (so: no torch here)."""

from __future__ import annotations

# Default ranking metric: the first one every finished job has.
PREFERRED_METRICS = ("eval/test/nll_iw", "val/nll_iw", "val/elbo", "val/loss")
HIGHER_IS_BETTER_WORDS = ("elbo", "log_px", "active_units", "disentanglement/")


def higher_is_better(metric: str) -> bool:
    return any(word in metric for word in HIGHER_IS_BETTER_WORDS)
