"""Every model satisfies the ``Model`` protocol that the trainer, the step, the objectives and evaluation are typed
with: each member it declares exists, and each method takes the protocol's parameters."""

from __future__ import annotations

import inspect

import pytest
import torch

from tests.conftest import model_config
from vae_cli.config.architectures import HVAEConfig, MLPConfig, VQVAEConfig
from vae_cli.models.build import build_model
from vae_cli.models.protocol import CodeGridModel, Model

MODELS = {
    "flat": MLPConfig(hidden_dims=[16], latent_dim=3),
    "hierarchical": HVAEConfig(layers=2, latent_channels=2, widths=[4, 8], blocks=1),
    "vqvae": VQVAEConfig(codebook_size=8, code_dim=4, widths=[4, 8], blocks=1),
}


def protocol_members(protocol: type) -> dict[str, object]:
    members = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object,) or not getattr(klass, "_is_protocol", False):
            continue
        members.update({k: v for k, v in vars(klass).items() if not k.startswith("_") or k == "__call__"})
        members.update({k: None for k in getattr(klass, "__annotations__", {})})
    return members


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_satisfies_the_protocol(name):
    model = build_model(model_config(MODELS[name]), (1, 28, 28))
    assert isinstance(model, Model)
    assert isinstance(model, CodeGridModel) == (name == "vqvae")
    for member, declared in protocol_members(CodeGridModel if name == "vqvae" else Model).items():
        assert hasattr(model, member), f"{type(model).__name__} lacks {member}"
        if inspect.isfunction(declared):
            wanted = [p for p in inspect.signature(declared).parameters if p != "self"]
            # nn.Module's __call__ takes *args and runs forward: forward has the protocol's parameters.
            have = inspect.signature(getattr(model, "forward" if member == "__call__" else member)).parameters
            assert all(p in have for p in wanted if not p.startswith(("args", "kwargs"))), (member, wanted, have)


@pytest.mark.parametrize("name", list(MODELS))
def test_what_the_protocol_promises_comes_back_in_its_shapes(name):
    torch.manual_seed(0)
    model: Model = build_model(model_config(MODELS[name]), (1, 28, 28))
    x = torch.rand(3, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, model.latent_dim)
    out = model(x)
    assert model.kl(out).shape == (3,) and model.kl_layers(out).shape == (3, len(model.layer_names))
    eps = torch.randn(2, 3, model.latent_dim)
    log_px_z, log_pz, log_qz, z = model.log_weights(x, None, eps)
    assert log_px_z.shape == log_pz.shape == log_qz.shape == (2, 3) and z.shape == (2, 3, model.latent_dim)
    assert model.decode(model.prior_sample(2)).shape[0] == 2
