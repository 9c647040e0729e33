"""The autoencoder family (loss=ae, wae, rae, aae, vaegan) and likelihood=msssim against independent computations:
numpy's MMD, a brute-force Jacobian, torch's matrix 2-norm, and every gradient routed to the parameters the papers
update with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import model_config
from vae_cli.config.architectures import ConvConfig, MLPConfig
from vae_cli.config.objectives import AAEConfig, AEConfig, RAEConfig, VAEGANConfig, WAEConfig
from vae_cli.models.build import build_model
from vae_cli.models.likelihoods.msssim import MSSSIMLikelihood
from vae_cli.objectives import build_objective, no_bound_reason
from vae_cli.objectives.base import ObjectiveContext
from vae_cli.objectives.mmd import mmd_unbiased
from vae_cli.objectives.rae import jacobian_norm_estimate

SHAPE = (1, 8, 8)
LATENT = 3


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(model_config(MLPConfig(latent_dim=LATENT, hidden_dims=[16])), SHAPE)


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)).round()


def ctx() -> ObjectiveContext:
    return ObjectiveContext(train_size=100, latent_dim=LATENT, image_shape=SHAPE)


def objective(schema, model=None, **values):
    cfg = OmegaConf.merge(OmegaConf.structured(schema), values)
    return build_objective(cfg, ctx(), model)


def grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    out = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, out, strict=True)]


def is_zero(gs: list[torch.Tensor]) -> bool:
    return all(float(g.abs().max()) == 0.0 for g in gs)


# ----- WAE: the multi-scale MMD ----------------------------------------------------------------------------------
def mmd_numpy(a: np.ndarray, b: np.ndarray, kernel: str, scales: list[float]) -> float:
    def k(u, v):
        sq = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        return sum(c / (c + sq) if kernel == "imq" else np.exp(-sq / c) for c in scales)

    n, m = len(a), len(b)
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return (kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1)) - 2 * kab.mean()


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_the_multiscale_mmd_matches_numpy(kernel):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 4, generator=g, dtype=torch.float64), torch.randn(30, 4, generator=g, dtype=torch.float64)
    scales = [8.0 * s for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)]
    got = mmd_unbiased(a + 0.5, b, kernel, scales).item()
    assert got == pytest.approx(mmd_numpy(a.numpy() + 0.5, b.numpy(), kernel, scales), rel=1e-10)


def test_wae_loss_is_the_reconstruction_at_the_mean_plus_lambda_mmd():
    model, x = tiny_model(), images(16)
    wae = objective(WAEConfig, **{"lambda": 7.0, "scales": [1.0, 2.0]})
    torch.manual_seed(4)
    terms = wae(model, x, None, None)
    mu, _ = model.encode(x)
    recon = -model.likelihood.log_prob(x, model.decode(mu)).mean()
    torch.manual_seed(4)
    prior = model.prior.sample(16).double()
    scales = [2.0 * LATENT * s for s in (1.0, 2.0)]
    mmd = mmd_numpy(mu.detach().double().numpy(), prior.numpy(), "imq", scales)
    assert terms["recon"].item() == pytest.approx(recon.item(), rel=1e-6)
    assert terms["mmd"].item() == pytest.approx(mmd, rel=1e-5, abs=1e-7)
    assert terms["loss"].item() == pytest.approx(recon.item() + 7.0 * mmd, rel=1e-5)


# ----- AE and RAE ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("regularizer", ["l2", "gp"])
def test_rae_with_every_weight_at_zero_is_the_plain_autoencoder(regularizer):
    x = images(16)
    model = tiny_model(2)
    rae = objective(RAEConfig, model, regularizer=regularizer, embedding_weight=0.0, decoder_weight=0.0)
    ae = objective(AEConfig, model)
    params = [p for p in model.parameters()]
    torch.manual_seed(0)
    r = rae(model, x, None, None)
    a = ae(model, x, None, None)
    torch.testing.assert_close(r["loss"], a["loss"])
    for gr, ga in zip(grads(r["loss"], params), grads(a["loss"], params), strict=True):
        torch.testing.assert_close(gr, ga)


def test_rae_terms_are_the_embedding_norm_and_the_decoders_weights():
    model, x = tiny_model(3), images(8)
    rae = objective(RAEConfig, model, regularizer="l2", embedding_weight=0.3, decoder_weight=0.01)
    terms = rae(model, x, None, None)
    mu = model.encode(x)[0].detach()
    weights = sum(float((p.detach().double() ** 2).sum()) for p in model.decoder.parameters())
    assert terms["embedding"].item() == pytest.approx(0.5 * float((mu.double() ** 2).sum(1).mean()), rel=1e-6)
    assert terms["decoder_reg"].item() == pytest.approx(weights, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(
        terms["recon"].item() + 0.3 * terms["embedding"].item() + 0.01 * weights, rel=1e-5
    )


def test_the_gradient_penalty_estimates_the_decoders_jacobian_norm():
    """E_v |v^T J|^2 = |J|_F^2: the probe average against the Jacobian built column by column."""
    model = tiny_model(4)
    z = torch.randn(3, LATENT, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda zz: model.decode(zz).flatten(1).sum(0), z)  # [P, B, D]
    exact = jac.pow(2).sum(dim=(0, 2))  # per image (each image's outputs depend only on its own code)
    torch.manual_seed(0)
    estimates = torch.stack([jacobian_norm_estimate(model.decode(z), z).detach() for _ in range(4000)])
    torch.testing.assert_close(estimates.mean(0), exact, rtol=0.05, atol=0.0)


def test_spectral_rae_normalizes_every_decoder_layer_and_loads_back():
    model = tiny_model(5)
    rae = objective(RAEConfig, model, regularizer="spectral")
    x = images(8)
    for _ in range(100):  # power iterations run in training mode (one a forward)
        rae(model, x, None, None)
    layers = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert layers
    for layer in layers:
        assert torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item() == pytest.approx(1.0, abs=1e-2)
    again = tiny_model(6)
    objective(RAEConfig, again, regularizer="spectral")
    again.load_state_dict(model.state_dict())
    model.eval(), again.eval()
    torch.testing.assert_close(again.decode(torch.ones(2, LATENT)), model.decode(torch.ones(2, LATENT)))


# ----- the adversarial ones: which parameters each loss trains --------------------------------------------------
def test_aae_losses_reach_only_the_networks_the_paper_updates():
    model, x = tiny_model(7), images(16)
    aae = objective(AAEConfig, model, disc_hidden=[8])
    torch.manual_seed(1)
    terms = aae(model, x, None, None)
    enc, dec = list(model.encoder.parameters()), list(model.decoder.parameters())
    disc = list(aae.discriminator.parameters())
    assert is_zero(grads(terms["disc"], enc + dec)) and not is_zero(grads(terms["disc"], disc))
    assert is_zero(grads(terms["gen"], dec + disc)) and not is_zero(grads(terms["gen"], enc))
    assert is_zero(grads(terms["recon"], disc))
    assert terms["loss"].item() == pytest.approx(terms["recon"].item() + terms["gen"].item(), rel=1e-6)
    # The step back-propagates loss + disc once: each network gets exactly its own losses' gradients.
    total = aae.minimized(terms)
    for got, want in zip(grads(total, disc), grads(terms["disc"], disc), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("gamma", [1.0, 0.25])
def test_vaegan_routes_its_three_losses_as_larsen_et_al(gamma):
    torch.manual_seed(0)
    model = build_model(model_config(ConvConfig(latent_dim=LATENT, conv_channels=[4, 8])), (1, 16, 16))
    vaegan = build_objective(
        OmegaConf.merge(
            OmegaConf.structured(VAEGANConfig), {"gamma": gamma, "disc_channels": [4, 8], "feature_layer": 2}
        ),
        ObjectiveContext(train_size=100, latent_dim=LATENT, image_shape=(1, 16, 16)),
        model,
    )
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)
    terms = vaegan(model, x, None, None)
    total = vaegan.minimized(terms)
    enc, dec = list(model.encoder.parameters()), list(model.decoder.parameters())
    disc = list(vaegan.discriminator.parameters())
    # Encoder: L_prior + L_llike, nothing of the GAN.
    for got, want in zip(grads(total, enc), grads(terms["kl"] + terms["recon"], enc), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert is_zero(grads(terms["gen"], enc))
    # Decoder: gamma * L_llike + the fooling terms.
    want = [gamma * a + b for a, b in zip(grads(terms["recon"], dec), grads(terms["gen"], dec), strict=True)]
    for got, w in zip(grads(total, dec), want, strict=True):
        torch.testing.assert_close(got, w, rtol=1e-4, atol=1e-6)
    # Discriminator: L_GAN only, never the feature reconstruction.
    assert is_zero(grads(terms["loss"], disc))
    for got, w in zip(grads(total, disc), grads(terms["disc"], disc), strict=True):
        torch.testing.assert_close(got, w)


def _parameter_casts(fn, params: list[torch.Tensor]) -> int:
    """How many casts to bf16 of one of ``params`` (or a detached view of it) ``fn`` makes."""
    from torch.utils._python_dispatch import TorchDispatchMode

    storages = {p.data_ptr() for p in params}

    class Casts(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            to_bf16 = func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16
            if to_bf16 and args[0].data_ptr() in storages:
                Casts.n += 1
            return func(*args, **kwargs)

    with Casts():
        fn()
    return Casts.n


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_discriminator_passes_are_the_module_with_and_without_its_parameters_trained(kind, bf16):
    # DiscriminatorPasses casts the weights once per step for both passes; each pass must be exactly what calling
    # the module would give (trained) or what calling it with detached parameters would give (frozen), bit for bit.
    from torch.func import functional_call

    from vae_cli.objectives.adversarial import DiscriminatorPasses

    torch.manual_seed(0)
    if kind == "mlp":
        net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 1))
        a, b = torch.randn(12, 6, requires_grad=True), torch.randn(24, 6)
    else:
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 4, 2, 1), torch.nn.LeakyReLU(0.2), torch.nn.Flatten(), torch.nn.Linear(64, 1)
        )
        a, b = torch.randn(12, 1, 8, 8, requires_grad=True), torch.randn(24, 1, 8, 8)
    params = list(net.parameters())

    def run(direct: bool):
        for p in params:
            p.grad = None
        a.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if direct:
                stopped = {n: p.detach() for n, p in net.named_parameters()}
                fooled, trained = functional_call(net, stopped, (a,)), net(b)
            else:
                passes = DiscriminatorPasses(net)
                fooled, trained = passes.frozen(a), passes.trained(b)
        # One backward for both, as the step does: a's gradient only from the frozen pass, the parameters' only
        # from the trained one.
        (fooled.float().square().sum() + trained.float().sum()).backward()
        return fooled.float(), trained.float(), a.grad.clone(), [p.grad.clone() for p in params]

    want, got = run(direct=True), run(direct=False)
    for w, g in zip(want[:3], got[:3], strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    for w, g in zip(want[3], got[3], strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    # The frozen pass trains nothing: the parameters' gradients are the trained pass's alone.
    for p in params:
        p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        DiscriminatorPasses(net).frozen(a).float().sum().backward()
    assert all(p.grad is None for p in params) and a.grad is not None
    # Under autocast the weights are cast once for both passes (autocast alone casts them again for the frozen one).
    if bf16:
        assert _parameter_casts(lambda: run(direct=True), params) == 2 * len(params)
        assert _parameter_casts(lambda: run(direct=False), params) == len(params)


def test_models_without_a_bound_say_why():
    model = tiny_model()
    for schema in (AEConfig, WAEConfig, RAEConfig, AAEConfig):
        assert "no bound on log p(x)" in no_bound_reason(OmegaConf.structured(schema), model)
    assert no_bound_reason(OmegaConf.structured(VAEGANConfig), model) == ""


# ----- MS-SSIM --------------------------------------------------------------------------------------------------
def test_msssim_term_is_zero_for_a_perfect_reconstruction_and_grows_with_noise():
    lik = MSSSIMLikelihood(scales=2, sigma=0.7)
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    logits = torch.logit(x)
    assert lik.log_prob(x, logits).abs().max().item() < 1e-3
    g = torch.Generator().manual_seed(1)
    worse = [-lik.log_prob(x, logits + s * torch.randn(x.shape, generator=g)).mean().item() for s in (0.2, 1.0, 3.0)]
    assert worse[0] < worse[1] < worse[2]


def test_msssim_with_one_scale_is_ssim_written_out_in_numpy():
    """One scale: MS-SSIM = SSIM = the mean of l * c * s over every pixel's window, the image reflect-padded by half
    a window (Gaussian window of sigma 0.7: 5 pixels; K1 0.01, K2 0.03), as torchmetrics documents it."""
    lik = MSSSIMLikelihood(scales=1, sigma=0.7)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 12, 12, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    got = lik.similarity(x, y).numpy()
    t = np.arange(5) - 2
    w1 = np.exp(-(t**2) / (2 * 0.7**2))
    w = np.outer(w1, w1) / np.outer(w1, w1).sum()

    def filt(a):  # one window per pixel of the reflect-padded image
        a = np.pad(a, 2, mode="reflect")
        out = np.zeros((a.shape[0] - 4, a.shape[1] - 4))
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = (a[i : i + 5, j : j + 5] * w).sum()
        return out

    c1, c2 = 0.01**2, 0.03**2
    want = []
    for a, b in zip(x.numpy()[:, 0], y.numpy()[:, 0], strict=True):
        ma, mb = filt(a), filt(b)
        va, vb, cov = filt(a * a) - ma**2, filt(b * b) - mb**2, filt(a * b) - ma * mb
        ssim = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
        want.append(ssim.mean())
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_msssim_gradients_are_finite_from_a_blank_decoder():
    """normalize=relu: a decoder that starts at grey (contrast terms near 0 or negative) gives no NaN gradient."""
    lik = MSSSIMLikelihood()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)).round()
    logits = torch.zeros_like(x, requires_grad=True)
    lik.log_prob(x, logits).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_msssim_is_computed_in_fp32_under_bf16_autocast():
    lik = MSSSIMLikelihood()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 28, 28, generator=g)
    logits = torch.randn(4, 1, 28, 28, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = lik.log_prob(x, logits)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, lik.log_prob(x, logits))


@pytest.mark.parametrize("bf16", [False, True])
def test_one_forward_for_both_passes_is_the_two_passes(bf16):
    # frozen_and_trained computes an MLP discriminator once over the shared rows and the extra ones; values and
    # every gradient must be the two passes' (FactorVAE: the live codes frozen, the codes and their permutation
    # trained), with arbitrary upstream gradients on both outputs, in fp32 and under bf16 autocast.
    from vae_cli.objectives.adversarial import DiscriminatorPasses

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 32),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(32, 32),
        torch.nn.LeakyReLU(0.1),
        torch.nn.Linear(32, 2),
    )
    a, b = torch.randn(12, 6, requires_grad=True), torch.randn(20, 6)
    up_frozen, up_trained = torch.randn(12, 2), torch.randn(32, 2)
    params = list(net.parameters())

    def run(shared: bool):
        for p in params:
            p.grad = None
        a.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            passes = DiscriminatorPasses(net)
            if shared:
                fooled, trained = passes.frozen_and_trained(a, b)
            else:
                fooled, trained = passes.frozen(a), passes.trained(torch.cat([a.detach(), b]))
        ((fooled.float() * up_frozen).sum() + (trained.float() * up_trained).sum()).backward()
        return [fooled.float(), trained.float(), a.grad.clone(), *[p.grad.clone() for p in params]]

    tolerance = {"rtol": 2e-2, "atol": 2e-2} if bf16 else {"rtol": 1e-5, "atol": 1e-6}
    want, got = run(shared=False), run(shared=True)
    assert [g.dtype for g in got] == [w.dtype for w in want]
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, **tolerance)
    # The frozen output trains nothing; the trained one reaches no input.
    for p in params:
        p.grad = None
    a.grad = None
    fooled, trained = DiscriminatorPasses(net).frozen_and_trained(a, b)
    fooled.sum().backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in params) and a.grad.abs().sum() > 0
    a.grad = None
    trained.sum().backward()
    assert (a.grad is None or not a.grad.any()) and all(p.grad.abs().sum() > 0 for p in params)


def test_shared_mlp_passes_pass_gradcheck_and_refuse_what_is_not_an_mlp():
    from torch import nn

    from vae_cli.objectives.aae import mlp_discriminator
    from vae_cli.objectives.factor_vae import Discriminator
    from vae_cli.objectives.mlp_passes import SharedMLPPasses, mlp_layers

    torch.manual_seed(0)
    d = torch.float64
    shapes = [(5, 3), (5,), (4, 5), (4,), (2, 4), (2,)]
    params = [torch.randn(*s, dtype=d, requires_grad=True) for s in shapes]
    a, b = torch.randn(4, 3, dtype=d, requires_grad=True), torch.randn(3, 3, dtype=d)
    slopes = (0.2, 0.1)
    # Each stream against finite differences, the other side held constant (which is what "stopped" means):
    # the frozen output as a function of the shared rows, the trained output as a function of the parameters.
    fixed = [p.detach() for p in params]
    assert torch.autograd.gradcheck(lambda x: SharedMLPPasses.apply(x, b, slopes, *fixed)[0], (a,))
    assert torch.autograd.gradcheck(lambda *w: SharedMLPPasses.apply(a.detach(), b, slopes, *w)[1], tuple(params))
    assert mlp_layers(Discriminator(10, [16, 16]).net) == [("0", 0.2), ("2", 0.2), ("4", None)]
    assert mlp_layers(mlp_discriminator(10, [16])) == [("0", 0.2), ("2", None)]
    refused = [
        nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(3, 4, bias=False), nn.LeakyReLU(0.2), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(-0.5), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2)),
        Discriminator(10, [16]),  # not a Sequential itself: FactorVAE passes its .net
    ]
    assert all(mlp_layers(m) is None for m in refused)
