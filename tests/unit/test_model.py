import pytest
import torch

from tests.conftest import model_config
from vae_cli.config.architectures import ConvConfig, MLPConfig, ResNetConfig
from vae_cli.config.catalog import ARCHITECTURES
from vae_cli.models.build import build_model
from vae_cli.models.hierarchical import HierarchicalVAE
from vae_cli.models.vae import VAE
from vae_cli.models.vqvae import VQVAE

FLAT = {
    "mlp": lambda cond: MLPConfig(latent_dim=7, hidden_dims=[32, 16], conditional=cond),
    "conv": lambda cond: ConvConfig(latent_dim=7, conv_channels=[8, 16], conditional=cond),
    "resnet": lambda cond: ResNetConfig(latent_dim=7, widths=[8, 16], blocks=1, conditional=cond),
}


@pytest.mark.parametrize("arch", list(FLAT))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("classes", [0, 10])
def test_forward_shapes(arch, shape, classes):
    model = build_model(model_config(FLAT[arch](classes > 0)), shape, num_classes=classes)
    x = torch.rand(5, *shape)
    y = torch.arange(5) % max(1, classes)
    out = model(x, y)
    assert out.params.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, 7)
    assert model.sample(3, y=y[:3]).shape == (3, *shape)


def test_classic_mlp_has_the_classic_parameter_count_and_state_dict_keys():
    # 784-400-20 VAE of the PyTorch example: fc1, fc21, fc22, fc3, fc4.
    model = build_model(model_config(MLPConfig(latent_dim=20, hidden_dims=[400])), (1, 28, 28))
    classic = (784 * 400 + 400) + 2 * (400 * 20 + 20) + (20 * 400 + 400) + (400 * 784 + 784)
    assert sum(p.numel() for p in model.parameters()) == classic
    # The keys runs saved before the model zoo (checkpoints must keep loading).
    assert set(model.state_dict()) == {
        "encoder.body.1.weight",
        "encoder.body.1.bias",
        "encoder.head.weight",
        "encoder.head.bias",
        "decoder.net.0.weight",
        "decoder.net.0.bias",
        "decoder.net.2.weight",
        "decoder.net.2.bias",
    }


def test_sample_is_reproducible_with_a_generator():
    model = build_model(model_config(MLPConfig(latent_dim=3, hidden_dims=[16])), (1, 28, 28))
    a = model.sample(4, torch.Generator().manual_seed(5))
    b = model.sample(4, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)


def test_encoder_outputs_define_the_posterior_the_sample_comes_from():
    model = build_model(model_config(MLPConfig(latent_dim=2, hidden_dims=[16])), (1, 28, 28))
    x = torch.rand(1, 1, 28, 28).expand(20_000, -1, -1, -1)
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out.z.mean(0), out.mu[0], atol=0.05, rtol=0)
    torch.testing.assert_close(out.z.var(0), out.logvar[0].exp(), atol=0.05, rtol=0.05)


def test_one_model_class_for_every_flat_architecture():
    # The networks of a flat Gaussian VAE are interchangeable parts of one class; the hierarchy and the VQ-VAE
    # (a different latent: a code grid) are their own.
    special = {"hvae": HierarchicalVAE, "vqvae": VQVAE}
    for entry in ARCHITECTURES:
        expected = special.get(entry.name, VAE)
        assert type(build_model(model_config(entry.schema()), (1, 28, 28))) is expected


def test_a_cvae_label_changes_the_decoded_image_and_the_posterior():
    torch.manual_seed(0)
    model = build_model(model_config(MLPConfig(latent_dim=4, hidden_dims=[32], conditional=True)), (1, 8, 8), 10)
    z = torch.randn(6, 4)
    with torch.no_grad():
        a = model.decode(z, torch.full((6,), 2))
        b = model.decode(z, torch.full((6,), 7))
        mu_a, _ = model.encode(torch.rand(6, 1, 8, 8), torch.full((6,), 2))
    assert (a - b).abs().mean() > 1e-3
    # The label enters as a one-hot vector: the same label gives the same output.
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z, torch.full((6,), 2)), a)
    assert mu_a.shape == (6, 4)
    with pytest.raises(ValueError, match="labels"):
        model.decode(z)
