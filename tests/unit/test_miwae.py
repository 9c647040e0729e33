"""loss=miwae against independent computations: its limiting settings (M = 1 is IWAE_K on the same noise, K = 1 the
mean log-weight), the bound written out with scipy from log-weights made with torch.distributions, and the
ordering ELBO <= MIWAE <= IWAE_{M*K} that holds sample by sample (Jensen's inequality)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from torch.distributions import Bernoulli, Normal

from tests.conftest import model_config
from vae_cli.config.architectures import MLPConfig
from vae_cli.config.objectives import IWAEConfig, MIWAEConfig
from vae_cli.models.build import build_model
from vae_cli.objectives import build_objective
from vae_cli.objectives.base import ObjectiveContext

SHAPE = (1, 4, 4)
CTX = ObjectiveContext(train_size=100, latent_dim=3)


def tiny():
    torch.manual_seed(0)
    model = build_model(model_config(MLPConfig(latent_dim=3, hidden_dims=[16])), SHAPE)
    x = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(1)).round()
    return model, x


def terms_and_grads(objective, model, x, seed):
    model.zero_grad()
    torch.manual_seed(seed)
    terms = objective(model, x, None, None)
    terms["loss"].backward()
    return {k: v.detach() for k, v in terms.items()}, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_one_group_is_iwae_on_the_same_noise_values_and_gradients(estimator):
    model, x = tiny()
    miwae = build_objective(MIWAEConfig(m=1, k=7, estimator=estimator), CTX)
    iwae = build_objective(IWAEConfig(k=7, estimator=estimator), CTX)
    t_m, g_m = terms_and_grads(miwae, model, x, seed=3)
    t_i, g_i = terms_and_grads(iwae, model, x, seed=3)
    assert t_m.keys() == t_i.keys()
    for key in t_m:
        torch.testing.assert_close(t_m[key], t_i[key], rtol=0, atol=0)
    for a, b in zip(g_m, g_i, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_bound_is_the_mean_of_m_iw_bounds_written_out_with_scipy():
    model, x = tiny()
    m, k = 3, 4
    torch.manual_seed(5)
    got = build_objective(MIWAEConfig(m=m, k=k), CTX)(model, x, None, None)["iw_elbo"].item()
    # The same draws, each density from torch.distributions, the bound from scipy's logsumexp.
    torch.manual_seed(5)
    eps = torch.randn(m * k, x.shape[0], 3)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps  # [MK, B, D]
        q = Normal(mu, torch.exp(0.5 * logvar))
        log_w = (
            Bernoulli(logits=model.decode(z.reshape(-1, 3))).log_prob(x.repeat(m * k, 1, 1, 1)).flatten(1).sum(1)
            + Normal(0.0, 1.0).log_prob(z).sum(-1).reshape(-1)
            - q.log_prob(z).sum(-1).reshape(-1)
        )
    log_w = log_w.double().numpy().reshape(m, k, x.shape[0])
    expected = (logsumexp(log_w, axis=1) - math.log(k)).mean(axis=0).mean()
    assert got == pytest.approx(expected, abs=1e-4)


def test_k_one_is_the_mean_log_weight():
    model, x = tiny()
    torch.manual_seed(2)
    terms = build_objective(MIWAEConfig(m=6, k=1), CTX)(model, x, None, None)
    torch.testing.assert_close(terms["iw_elbo"], terms["elbo"], rtol=1e-6, atol=1e-4)


def test_elbo_le_miwae_le_iwae_of_all_samples_on_the_same_noise():
    model, x = tiny()
    values = {}
    for name, cfg in {"miwae": MIWAEConfig(m=4, k=5), "iwae": IWAEConfig(k=20)}.items():
        torch.manual_seed(11)
        values[name] = build_objective(cfg, CTX)(model, x, None, None)
    elbo, miwae, iwae = (
        values["miwae"]["elbo"].item(),
        values["miwae"]["iw_elbo"].item(),
        values["iwae"]["iw_elbo"].item(),
    )
    assert values["iwae"]["elbo"].item() == pytest.approx(elbo, abs=1e-4)  # the same 20 samples
    assert elbo < miwae < iwae
    assert np.isfinite([elbo, miwae, iwae]).all()
