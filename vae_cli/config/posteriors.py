"""The ``posterior`` group: q(z|x) (``posterior=gaussian``, ``planar``, ``radial``, ``iaf``, ``vmf``,
``wrapped_normal``), one schema each, registered in ``POSTERIORS`` (config/catalog.py) with its builder in
``vae_cli.models.posteriors`` and the facts other groups' checks read (``geometry``, ``dreg``, ``score_correction``).

Every posterior but the Gaussian is a part of the flat model (one latent vector); the checks here refuse, before any
data loads, the combinations that cannot work: a prior in another space, an objective that asks of q what it cannot
give, a hierarchical or VQ model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vae_cli.config.catalog import ARCHITECTURES, OBJECTIVES, POSTERIORS, PRIORS
from vae_cli.config.checks import Need, positive_list
from vae_cli.config.enums import IAFStep

# What an objective's ``posterior`` fact asks, in words (the refusals name it).
NEEDS = {
    "flat": "gradients of log p(x, z) in z, in flat space",
    "gaussian": "a diagonal Gaussian's (mu, logvar) themselves (per-dimension densities of other images' samples, "
    "covariances)",
    "point": "one point per image, the Gaussian head's mean (its encoder is deterministic: a flow, a sphere or a ball "
    "would be trained for nothing)",
}
GEOMETRY = {"flat": "R^D", "sphere": "the unit sphere S^(D-1)", "poincare": "the Poincare ball"}


@POSTERIORS.register(build="vae_cli.models.posteriors.gaussian:build", dreg=True)
@dataclass
class PosteriorConfig:
    # q(z|x): gaussian (a diagonal Gaussian, the default), or another of POSTERIORS: planar / radial (normalizing
    # flows after the Gaussian), iaf (inverse autoregressive flow), vmf (von Mises-Fisher on the sphere),
    # wrapped_normal (on the Poincare ball).
    name: str = "gaussian"

    @classmethod
    def check(cls, posterior: Any, cfg: Any, need: Need) -> None:
        name = str(posterior.name)
        if cfg is None or name not in POSTERIORS:
            return
        entry = POSTERIORS[name]
        arch = ARCHITECTURES.option_of(cfg.model)
        if name != "gaussian" and arch in ARCHITECTURES and ARCHITECTURES[arch].latent != "vector":
            flat = [a.name for a in ARCHITECTURES if a.latent == "vector"]
            need(
                False,
                f"posterior={name} is a posterior over one latent vector; model={arch} has its own posterior "
                f"({ARCHITECTURES[arch].latent}). Use a flat model (model={', '.join(flat)}) with posterior={name}, "
                f"or posterior=gaussian with model={arch}.",
            )
            return
        prior = str(cfg.prior.name)
        if prior in PRIORS and not PRIORS[prior].code_prior and PRIORS[prior].geometry != entry.geometry:
            same = [p.name for p in PRIORS if p.geometry == entry.geometry and not p.code_prior]
            need(
                False,
                f"posterior={name} puts z on {GEOMETRY[entry.geometry]} and prior={prior} is a density on "
                f"{GEOMETRY[PRIORS[prior].geometry]}: the KL between them is not defined. Use "
                f"{' or '.join(f'prior={p}' for p in same)} with posterior={name}.",
            )
        loss = str(cfg.loss.name)
        if loss in OBJECTIVES:
            wants = OBJECTIVES[loss].posterior
            ok = {
                "any": True,
                "flat": entry.geometry == "flat",
                "gaussian": name == "gaussian",
                "point": name == "gaussian",
            }[wants]
            need(
                ok,
                f"loss={loss} needs {NEEDS.get(wants, wants)}, which posterior={name} does not give. Use "
                f"posterior={'gaussian' if wants in ('gaussian', 'point') else 'gaussian or vmf'} with loss={loss}, or "
                f"another objective (loss=elbo, iwae) with posterior={name}.",
            )
            if entry.score_correction and OBJECTIVES[loss].iw_gradient:
                need(
                    False,
                    f"posterior={name} draws z with a rejection sampler whose gradient has a correction term per "
                    f"sample (Davidson et al. 2018); loss={loss} weighs several samples inside one log-sum-exp, where "
                    f"that term has no unbiased place. Train posterior={name} with loss=elbo (any beta); vae-eval "
                    f"still gives its importance-weighted log-likelihood.",
                )
            if cfg.loss.get("estimator") == "dreg" and not entry.dreg:
                need(
                    False,
                    f"loss.estimator=dreg evaluates log q with q's parameters stopped at a reparameterized z, which "
                    f"posterior={name} does not give (only posterior=gaussian). Use loss.estimator=iwae.",
                )
            if float(cfg.loss.get("free_bits", 0) or 0) > 0 and name != "gaussian":
                need(
                    False,
                    f"loss.free_bits needs each latent dimension's KL in closed form, which posterior={name} has not; "
                    f"use posterior=gaussian, or loss.capacity_max for a target on the total KL.",
                )
        if entry.score_correction and cfg.trainer.get("cuda_graphs", False):
            need(
                False,
                f"posterior={name} draws z with a rejection loop whose length depends on the data (a host sync), "
                f"which a captured CUDA graph cannot replay; use trainer.cuda_graphs=false.",
            )


def check_flows(posterior: Any, need: Need, most: int = 64) -> None:
    need(
        0 <= posterior.flows <= most,
        f"posterior.flows must be in [0, {most}] (got {posterior.flows}); 0 is the Gaussian posterior.",
    )


@POSTERIORS.register(build="vae_cli.models.posteriors.planar:build")
@dataclass
class PlanarConfig(PosteriorConfig):
    name: str = "planar"
    # Planar flows f(z) = z + u_hat tanh(w.z + b) after the Gaussian (Rezende & Mohamed 2015); their parameters
    # come from the encoder, per image (amortized, as in the paper).
    flows: int = 10

    @classmethod
    def check(cls, posterior: Any, cfg: Any, need: Need) -> None:
        check_flows(posterior, need)


@POSTERIORS.register(build="vae_cli.models.posteriors.radial:build")
@dataclass
class RadialConfig(PosteriorConfig):
    name: str = "radial"
    # Radial flows f(z) = z + beta h(alpha, r) (z - z0) after the Gaussian (Rezende & Mohamed 2015), amortized.
    flows: int = 10

    @classmethod
    def check(cls, posterior: Any, cfg: Any, need: Need) -> None:
        check_flows(posterior, need)


@POSTERIORS.register(build="vae_cli.models.posteriors.iaf:build")
@dataclass
class IAFConfig(PosteriorConfig):
    name: str = "iaf"
    # Inverse autoregressive flow steps after the Gaussian (Kingma et al., 2016), each a MADE given the context h.
    flows: int = 4
    # Each MADE's hidden widths.
    hidden: list[int] = field(default_factory=lambda: [320, 320])
    # Size of the context h the encoder outputs beside (mu, logvar); every step's MADE takes it.
    context: int = 32
    # Each step's update from its MADE's (m, s): gated (the paper's) or affine (z exp(s) + m: with context=0 it is
    # pythae's model, about 2 nats better on binarized Fashion-MNIST at 3 epochs; see docs/models.md).
    step: IAFStep = IAFStep.gated

    @classmethod
    def check(cls, posterior: Any, cfg: Any, need: Need) -> None:
        check_flows(posterior, need, most=16)
        need(
            positive_list(posterior.hidden), f"posterior.hidden must be positive widths (got {list(posterior.hidden)})."
        )
        need(posterior.context >= 0, f"posterior.context must be >= 0 (got {posterior.context}).")
        latent_dim = None if cfg is None else cfg.model.get("latent_dim")
        if latent_dim is not None:
            need(
                all(h >= latent_dim - 1 for h in posterior.hidden),
                f"posterior.hidden widths must be at least model.latent_dim - 1 = {latent_dim - 1} (got "
                f"{list(posterior.hidden)}): a MADE layer narrower than that cannot connect every input to the outputs "
                f"after it.",
            )


@POSTERIORS.register(build="vae_cli.models.posteriors.vmf:build", geometry="sphere", score_correction=True)
@dataclass
class VMFConfig(PosteriorConfig):
    name: str = "vmf"
    # von Mises-Fisher q(z|x) on the unit sphere S^(D-1) (Davidson et al., 2018): direction from the encoder's mu,
    # concentration kappa = softplus(.) + 1 from the first unit of its logvar head.

    @classmethod
    def check(cls, posterior: Any, cfg: Any, need: Need) -> None:
        latent_dim = None if cfg is None else cfg.model.get("latent_dim")
        if latent_dim is not None:
            need(latent_dim >= 2, f"posterior=vmf needs model.latent_dim >= 2 (a sphere S^(D-1); got {latent_dim}).")


@POSTERIORS.register(build="vae_cli.models.posteriors.wrapped_normal:build", geometry="poincare")
@dataclass
class WrappedNormalConfig(PosteriorConfig):
    name: str = "wrapped_normal"
    # Curvature c of the Poincare ball of radius 1/sqrt(c) (Mathieu et al., 2019); the prior lives on the same ball.
    curvature: float = 1.0

    @classmethod
    def check(cls, posterior: Any, cfg: Any, need: Need) -> None:
        need(
            0.01 <= posterior.curvature <= 100,
            f"posterior.curvature must be in [0.01, 100] (got {posterior.curvature}).",
        )
