"""What ``vae-eval`` prints: the tables of a likelihood evaluation (a VQ-VAE's its own) and of the disentanglement
metrics."""

from __future__ import annotations

import math

from vae_cli.evaluation.bounds import EvalResult
from vae_cli.evaluation.disentanglement.suite import DisentanglementResult
from vae_cli.evaluation.latent_views import dims_by_kl
from vae_cli.evaluation.reconstruction import ReconstructionResult
from vae_cli.evaluation.sample_quality.suite import SampleQualityResult
from vae_cli.runs.loaded import LoadedRun


def format_vq_table(result: EvalResult, run: LoadedRun) -> str:
    """A VQ-VAE (and its prior's run): reconstruction, the prior's NLL of the codes, the bound, code usage."""
    cb = result.codebook or {}
    positions = math.prod(run.model.grid)
    learned = run.model.prior.learned
    prior_line = "prior -log p(codes), PixelCNN" if learned else "prior -log p(codes), uniform"
    used = f"{cb.get('codes_used')} / {cb.get('codebook_size')}"
    lines = [
        f"{run.checkpoint_path} (epoch {run.epoch}, step {run.step})",
        f"{result.split} split: {result.num_images} images, a {run.model.grid[0]}x{run.model.grid[1]} code grid of "
        f"{cb.get('codebook_size')} codes, {result.seconds:.1f} s",
        "",
        f"  {'metric (per image)':<34}{'value':>12}",
        f"  {'reconstruction -log p(x|c) (nats)':<34}{result.recon:>12.3f}",
        f"  {prior_line + ' (nats)':<34}{result.kl:>12.3f}",
        f"  {'   per code (bits)':<34}{result.kl / positions / math.log(2):>12.3f}",
        f"  {'-log p(x) <= (nats)':<34}{result.nll_iw:>12.3f}",
        f"  {'   (bits/dim)':<34}{result.bits_per_dim:>12.4f}",
        f"  {'codebook perplexity':<34}{cb.get('perplexity', float('nan')):>12.1f}",
        f"  {'codes used':<34}{used:>12}",
        "",
        "The bound is the ELBO of a one-hot posterior, -log p(x|c(x)) - log p(c(x)): an upper bound on -log p(x)"
        + (
            " under the PixelCNN prior."
            if learned
            else " under the uniform prior (train a PixelCNN prior on the codes "
            f"for a far tighter one: vae-train prior=pixelcnn prior.vqvae={run.run_dir})."
        ),
    ]
    return "\n".join(lines)


def format_samples(result: SampleQualityResult, run: LoadedRun) -> str:
    """Sample quality: what was compared with what, in which feature space, and the four numbers."""
    s = result.scores
    lines = [
        f"{run.checkpoint_path} (epoch {run.epoch}, step {run.step})",
        f"{result.num_samples:,} samples through {result.sampler} ({result.sampler_description}), seed {result.seed}, "
        f"against {result.num_real:,} {result.real_split} images, {result.seconds:.1f} s",
        f"features: {result.feature_label} [{result.feature_network}]",
        "",
        f"  {'metric':<34}{'value':>12}",
        f"  {'FID (lower is better)':<34}{s.fid:>12.3f}",
        f"  {'KID (lower; ± std over subsets)':<34}{s.kid:>12.5f} ± {s.kid_std:.5f}",
        f"  {f'precision (k={s.neighbours}, higher is better)':<34}{s.precision:>12.4f}",
        f"  {f'recall (k={s.neighbours}, higher is better)':<34}{s.recall:>12.4f}",
        "",
        "Compare these only with numbers of the same feature network, N and real split"
        + ("" if result.comparable_with_literature else " (this network's are not comparable with published FIDs)")
        + ".",
    ]
    return "\n".join(lines)


def format_reconstruction(result: ReconstructionResult, run: LoadedRun) -> str:
    """A model without a likelihood bound: why, and its reconstruction error."""
    lines = [
        f"{run.checkpoint_path} (epoch {run.epoch}, step {run.step})",
        f"{result.split} split: {result.num_images} images, z = the mean of q(z|x), {result.seconds:.1f} s",
        "",
        f"  {'metric':<44}{'value':>12}",
        f"  {'reconstruction term (per image)':<44}{result.recon:>12.3f}",
        f"  {'mean squared error (per pixel, [0, 1] scale)':<44}{result.mse:>12.5f}",
        f"  {'active units (Var[mu] > ' + f'{result.active_threshold:g})':<44}"
        f"{f'{result.active_units} / {len(result.mu_variance)}':>12}",
        "",
        f"No likelihood bound: {result.no_bound}. Judge it by its samples: vae-eval RUN --samples 10000 "
        f"(FID, KID, precision/recall), through its prior or a fitted sampler (vae-fit-sampler RUN --sampler gmm).",
    ]
    return "\n".join(lines)


def format_table(result: EvalResult | ReconstructionResult, run: LoadedRun) -> str:
    if isinstance(result, ReconstructionResult):
        return format_reconstruction(result, run)
    if result.codebook is not None:
        return format_vq_table(result, run)

    latent_dim = len(result.mu_variance)
    per_dim_values = result.kl_per_dim if result.kl_per_dim is not None else result.mu_variance
    order = dims_by_kl(per_dim_values)
    shown = 32  # a hierarchy has hundreds of dimensions: the most used ones say what matters
    per_dim = ", ".join(f"z{d}: {per_dim_values[d]:.2f}" for d in order[:shown])
    if len(order) > shown:
        per_dim += f", ... ({len(order) - shown} more)"
    what = (
        "KL per dimension"
        if result.kl_per_dim is not None
        else "Var[mu] per dimension (the prior has no per-dimension KL)"
    )
    lines = [
        f"{run.checkpoint_path} (epoch {run.epoch}, step {run.step})",
        f"{result.split} split: {result.num_images} images, K={result.k}, {result.seconds:.1f} s",
        "",
        f"  {'metric (per image)':<26}{'value':>12}",
        f"  {'ELBO (nats)':<26}{result.elbo:>12.3f}",
        f"  {'reconstruction (nats)':<26}{result.recon:>12.3f}",
        f"  {'KL (nats)':<26}{result.kl:>12.3f}",
        f"  {f'log p(x), IW-{result.k} (nats)':<26}{result.log_px_iw:>12.3f}",
        f"  {'-log p(x) (bits/dim)':<26}{result.bits_per_dim:>12.4f}",
        f"  {'active units':<26}{f'{result.active_units} / {latent_dim}':>12}",
        *(f"  {f'KL of layer {name} (nats)':<26}{value:>12.3f}" for name, value in (result.kl_per_layer or {}).items()),
        "",
        f"{what}, largest first: {per_dim}",
    ]
    return "\n".join(lines)


def format_disentanglement(result: DisentanglementResult, run: LoadedRun) -> str:
    names = {
        "disentanglement/mig": "MIG",
        "disentanglement/dci_disentanglement": "DCI disentanglement",
        "disentanglement/dci_completeness": "DCI completeness",
        "disentanglement/dci_informativeness_test": "DCI informativeness (test acc.)",
        "disentanglement/sap": "SAP",
        "disentanglement/factor_vae_score": "FactorVAE score (eval acc.)",
        "disentanglement/beta_vae_score": "BetaVAE score (eval acc.)",
    }
    seconds = sum(result.seconds.values())
    lines = [
        f"{run.checkpoint_path} (epoch {run.epoch}, step {run.step})",
        f"disentanglement on '{run.cfg.dataset.name}' (representation: mean of q(z|x)), {seconds:.1f} s",
        "",
        f"  {'metric':<34}{'value':>8}",
        *(f"  {names.get(k, k):<34}{v:>8.3f}" for k, v in result.scores.items()),
    ]
    mig_detail = result.details.get("mig")
    if mig_detail is not None:
        gaps = ", ".join(f"{v:.2f}" for v in mig_detail["per_factor"])
        lines += ["", f"MIG per factor: {gaps}"]
    return "\n".join(lines)
