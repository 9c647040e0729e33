"""Configs saved by older vae-cli versions (inside their checkpoints) load into today's typed families."""

from __future__ import annotations

from vae_cli.config.architectures import ConvConfig, MLPConfig
from vae_cli.config.likelihoods import BernoulliConfig, GaussianLikelihoodConfig
from vae_cli.config.schema import structured, to_plain_dict

BEFORE_ZOO = {  # one model with every architecture's keys; the likelihood inside the loss group
    "dataset": {"name": "fashion_mnist"},
    "model": {"arch": "mlp", "latent_dim": 8, "hidden_dims": [64], "conv_channels": [32, 64]},
    "loss": {"beta": 2.0, "likelihood": "gaussian", "gaussian_std": 0.05},
}
BEFORE_ZOO_II = {  # likelihood group with a std for every likelihood; both architectures' keys again
    "dataset": {"name": "cifar10", "channels": 3, "image_size": 32},
    "model": {"arch": "conv", "latent_dim": 16, "hidden_dims": [400], "conv_channels": [8, 16], "conditional": False},
    "likelihood": {"name": "bernoulli", "std": 0.1},
    "prior": {"name": "normal"},
    "loss": {"name": "elbo", "beta": 1.0},
}


def test_a_config_from_before_the_model_zoo_loads():
    cfg = structured(BEFORE_ZOO)
    assert isinstance(cfg.model._metadata.object_type(), MLPConfig)
    assert list(cfg.model.hidden_dims) == [64] and "conv_channels" not in cfg.model
    assert isinstance(cfg.likelihood._metadata.object_type(), GaussianLikelihoodConfig)
    assert cfg.likelihood.std == "0.05" and cfg.loss.name == "elbo" and cfg.loss.beta == 2.0
    assert "likelihood" not in cfg.loss and cfg.prior.name == "normal"


def test_a_config_from_before_zoo_ii_loads_and_round_trips():
    cfg = structured(BEFORE_ZOO_II)
    assert isinstance(cfg.model._metadata.object_type(), ConvConfig)
    assert list(cfg.model.conv_channels) == [8, 16] and "hidden_dims" not in cfg.model
    assert cfg.likelihood._metadata.object_type is BernoulliConfig and "std" not in cfg.likelihood
    again = structured(to_plain_dict(cfg))
    assert to_plain_dict(again) == to_plain_dict(cfg)


def test_a_config_from_before_posteriors_were_a_part_has_the_gaussian_posterior():
    cfg = structured(BEFORE_ZOO_II)
    assert cfg.posterior.name == "gaussian" and set(cfg.posterior) == {"name"}
    iaf = structured({**BEFORE_ZOO_II, "posterior": {"name": "iaf", "flows": 2, "hidden": [16], "context": 4}})
    assert iaf.posterior.flows == 2 and list(iaf.posterior.hidden) == [16]
