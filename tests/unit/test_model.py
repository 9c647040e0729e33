import pytest
import torch

from vae_cli.config import Arch, ModelConfig
from vae_cli.models.vae import VAE, build_model


@pytest.mark.parametrize("arch", [Arch.mlp, Arch.conv])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_forward_shapes(arch, shape):
    cfg = ModelConfig(arch=arch, latent_dim=7, hidden_dims=[32, 16], conv_channels=[8, 16])
    model = build_model(cfg, shape)
    x = torch.rand(5, *shape)
    out = model(x)
    assert out.params.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, 7)
    assert model.sample(3).shape == (3, *shape)


def test_classic_mlp_has_the_classic_parameter_count():
    # 784-400-20 VAE of the PyTorch example: fc1, fc21, fc22, fc3, fc4.
    model = build_model(ModelConfig(arch=Arch.mlp, latent_dim=20, hidden_dims=[400]), (1, 28, 28))
    classic = (784 * 400 + 400) + 2 * (400 * 20 + 20) + (20 * 400 + 400) + (400 * 784 + 784)
    assert sum(p.numel() for p in model.parameters()) == classic


def test_sample_is_reproducible_with_a_generator():
    model = build_model(ModelConfig(latent_dim=3, hidden_dims=[16]), (1, 28, 28))
    a = model.sample(4, torch.Generator().manual_seed(5))
    b = model.sample(4, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)


def test_encoder_outputs_define_the_posterior_the_sample_comes_from():
    model = build_model(ModelConfig(latent_dim=2, hidden_dims=[16]), (1, 28, 28))
    x = torch.rand(1, 1, 28, 28).expand(20_000, -1, -1, -1)
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out.z.mean(0), out.mu[0], atol=0.05, rtol=0)
    torch.testing.assert_close(out.z.var(0), out.logvar[0].exp(), atol=0.05, rtol=0.05)


def test_vae_is_one_class_for_every_architecture():
    for arch in Arch:
        assert type(build_model(ModelConfig(arch=arch), (1, 28, 28))) is VAE
