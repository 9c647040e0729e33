"""model=vqvae and prior=pixelcnn against direct computations: nearest codes, the straight-through gradient, which
side each loss trains, the EMA step written out, dead-code restarts, the PixelCNN's causality (by gradients), and a
trained prior's samples against uniform codes."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import model_config
from vae_cli.config.architectures import VQVAEConfig
from vae_cli.config.objectives import ELBOConfig
from vae_cli.config.priors import PixelCNNPriorConfig
from vae_cli.evaluation.bounds import codebook_statistics
from vae_cli.models.build import build_model
from vae_cli.models.pixelcnn import GatedPixelCNN, UniformCodePrior
from vae_cli.models.quantizer import DEAD_USAGE, VectorQuantizer
from vae_cli.objectives.base import ObjectiveContext
from vae_cli.objectives.elbo import ELBO


def grid(b=2, d=3, h=2, w=3, seed=0) -> torch.Tensor:
    return torch.randn(b, d, h, w, generator=torch.Generator().manual_seed(seed))


def test_codes_are_the_nearest_entries_and_the_gradient_goes_straight_through():
    q = VectorQuantizer(size=5, dim=3, restart_dead=False).eval()
    z_e = grid().requires_grad_(True)
    z_q, codes, _ = q(z_e)
    flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    book = q.embedding.detach()
    brute = torch.tensor([min(range(5), key=lambda k, v=v: float((v - book[k]).pow(2).sum())) for v in flat])
    assert torch.equal(codes.flatten(), brute)
    assert torch.allclose(z_q, q.embedding[codes].permute(0, 3, 1, 2))
    weights = torch.randn_like(z_q)
    (z_q * weights).sum().backward()
    assert torch.equal(z_e.grad, weights)  # d z_q / d z_e is the identity


def test_codebook_trains_the_codebook_and_commitment_the_encoder_with_per_image_sums():
    q = VectorQuantizer(size=4, dim=3, restart_dead=False).eval()
    z_e = grid(b=3).requires_grad_(True)
    _, codes, terms = q(z_e)
    chosen = q.embedding[codes].permute(0, 3, 1, 2)
    expected = (z_e.detach() - chosen.detach()).pow(2).sum(dim=(1, 2, 3)).mean()
    assert terms["codebook"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["commitment"].item() == pytest.approx(expected.item(), rel=1e-6)
    commit_grad_e, commit_grad_book = torch.autograd.grad(
        terms["commitment"], [z_e, q.embedding], retain_graph=True, allow_unused=True
    )
    assert commit_grad_book is None or torch.count_nonzero(commit_grad_book) == 0
    assert torch.allclose(commit_grad_e, 2 * (z_e - chosen).detach() / 3)
    book_grad_e, book_grad_book = torch.autograd.grad(terms["codebook"], [z_e, q.embedding], allow_unused=True)
    assert book_grad_e is None or torch.count_nonzero(book_grad_e) == 0
    expected_book = torch.zeros_like(q.embedding)
    diff = (chosen - z_e).detach().permute(0, 2, 3, 1).reshape(-1, 3)
    expected_book.index_add_(0, codes.flatten(), 2 * diff / 3)
    assert torch.allclose(book_grad_book, expected_book, atol=1e-6)


def test_the_model_weighs_commitment_by_beta_and_adds_both_to_the_elbo():
    model = build_model(
        model_config(VQVAEConfig(codebook_size=8, code_dim=4, widths=[4, 8], blocks=1, commitment=0.25)), (1, 8, 8)
    )
    objective = ELBO(ELBOConfig(), ObjectiveContext.of(model, 10))
    torch.manual_seed(0)
    x = torch.rand(3, 1, 8, 8)
    terms = objective(model, x, None, None)
    z_e = model.encoder(x)
    _, _, raw = model.quantizer(z_e)
    assert terms["commitment"].item() == pytest.approx(0.25 * raw["commitment"].item(), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(16 * math.log(8), rel=1e-6)  # 4x4 grid, uniform prior
    total = terms["recon"] + terms["kl"] + terms["codebook"] + terms["commitment"]
    assert terms["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    assert terms["elbo"].item() == pytest.approx(-(terms["recon"] + terms["kl"]).item(), rel=1e-6)


def test_ema_update_matches_a_hand_computed_step():
    q = VectorQuantizer(size=3, dim=2, ema=True, decay=0.9, epsilon=1e-5, restart_dead=False)
    with torch.no_grad():
        q.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
        q.embed_sum.copy_(q.embedding)
        q.cluster_size.fill_(1.0)
    z = torch.tensor([[0.1, -0.1], [0.9, 1.2], [1.1, 0.8], [0.2, 0.0]]).view(1, 2, 2, 2).permute(0, 3, 1, 2)
    z = z.contiguous()
    before = q.embedding.clone()
    _, codes, terms = q.train()(z)
    assert codes.flatten().tolist() == [0, 1, 1, 0] and "codebook" not in terms
    counts = torch.tensor([2.0, 2.0, 0.0])
    sums = torch.stack([torch.tensor([0.3, -0.1]), torch.tensor([2.0, 2.0]), torch.zeros(2)])
    cluster = 0.9 * torch.ones(3) + 0.1 * counts
    embed_sum = 0.9 * before + 0.1 * sums
    n = cluster.sum()
    smoothed = (cluster + 1e-5) / (n + 3 * 1e-5) * n
    assert torch.allclose(q.cluster_size, cluster)
    assert torch.allclose(q.embedding, embed_sum / smoothed.unsqueeze(1), atol=1e-6)
    # An unused code stays where it was, to within the smoothing (no blow-up of its vector).
    assert torch.allclose(q.embedding[2], before[2], rtol=0.02)


def test_a_dead_code_restarts_at_an_encoder_output():
    torch.manual_seed(0)
    q = VectorQuantizer(size=4, dim=2, restart_dead=True).train()
    with torch.no_grad():
        q.embedding.copy_(torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [100.0, 100.0]]))  # code 3: unreachable
    z = torch.randn(1, 2, 4, 4) * 0.1
    steps = 0
    while q.embedding[3, 0] == 100.0 and steps < 2000:
        q(z)
        steps += 1
    # ~460 steps of disuse at decay 0.99 before its usage falls below DEAD_USAGE and it counts as dead.
    assert (
        math.ceil(math.log(DEAD_USAGE) / math.log(0.99)) - 2
        <= steps
        <= math.ceil(math.log(DEAD_USAGE) / math.log(0.99)) + 2
    )
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    # That step restarted it at one of the batch's encoder outputs (and only it).
    assert (flat - q.embedding[3]).abs().sum(1).min().item() < 1e-6
    assert q.embedding[:3].abs().max().item() <= 0.1 + 1e-6 and q.usage[3].item() == 1.0


def test_perplexity_and_usage_statistics():
    assert codebook_statistics(torch.tensor([5.0, 5.0, 5.0, 5.0]))["perplexity"] == pytest.approx(4.0)
    one = codebook_statistics(torch.tensor([9.0, 0.0, 0.0]))
    assert one["perplexity"] == pytest.approx(1.0) and one["codes_used"] == 1
    q = VectorQuantizer(size=4, dim=1, restart_dead=False).eval()
    with torch.no_grad():
        q.embedding.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    _, _, terms = q(torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2))
    assert terms["perplexity"].item() == pytest.approx(4.0) and terms["codes_used"].item() == 1.0


def test_the_pixelcnn_is_causal_and_has_no_blind_spot():
    torch.manual_seed(0)
    prior = GatedPixelCNN(16, (7, 7), channels=8, layers=6, kernel=3)
    e = torch.randn(1, 8, 7, 7, requires_grad=True)
    logits = prior.logits_from_embedding(e)
    for i in range(7):
        for j in range(7):
            (grad,) = torch.autograd.grad(logits[0, :, i, j].sum(), e, retain_graph=True)
            seen = grad.abs().sum(dim=(0, 1)) > 0
            for a in range(7):
                for b in range(7):
                    assert bool(seen[a, b]) == ((a, b) < (i, j)), (i, j, a, b)


def test_the_uniform_prior_is_h_w_log_k():
    prior = UniformCodePrior(512, (7, 7))
    assert prior.nll(torch.zeros(3, 7, 7, dtype=torch.long)).tolist() == pytest.approx([49 * math.log(512)] * 3)


def test_a_trained_pixelcnn_samples_codes_it_scores_far_above_uniform_ones():
    torch.manual_seed(0)
    k, side = 8, 5
    rows = torch.arange(side).view(side, 1).expand(side, side)
    cols = torch.arange(side).view(1, side).expand(side, side)

    def structured(n):  # codes with strong spatial structure: (i + j + shift) mod K, a random shift per grid
        shift = torch.randint(0, k, (n, 1, 1))
        return (rows + cols + shift) % k

    prior = GatedPixelCNN(k, (side, side), channels=32, layers=6, kernel=3)
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        prior.nll(structured(64)).mean().backward()
        opt.step()
    prior.eval()
    gen = torch.Generator().manual_seed(1)
    sampled = prior.sample(64, generator=gen)
    uniform = UniformCodePrior(k, (side, side)).sample(64, generator=gen)
    with torch.no_grad():
        nll_sampled, nll_uniform = prior.nll(sampled).mean().item(), prior.nll(uniform).mean().item()
    assert nll_sampled < 10 and nll_uniform > 5 * nll_sampled
    assert (sampled == structured(64)[0] * 0 + sampled).all()  # shape and dtype of a code grid
    expected = (sampled[:, :1, :1] + rows + cols) % k
    assert (sampled == expected).float().mean().item() > 0.9  # the structure was learned


def test_the_second_stage_is_built_frozen_and_only_its_prior_trains():
    cfg = model_config(
        VQVAEConfig(codebook_size=8, code_dim=4, widths=[4, 8], blocks=1),
        prior=PixelCNNPriorConfig(layers=2, channels=8),
    )
    model = build_model(cfg, (1, 8, 8))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("prior.") for name in trainable)
    assert model.frozen and model.aux_loss_names == () and model.can_sample
    objective = ELBO(ELBOConfig(), ObjectiveContext.of(model, 10))
    assert objective.terms == ("loss", "recon", "kl", "elbo", "perplexity", "codes_used")
    model.train()
    before = model.quantizer.embedding.clone()
    objective(model, torch.rand(4, 1, 8, 8), None, None)["loss"].backward()
    assert torch.equal(model.quantizer.embedding, before)  # no codebook update, no restart


def test_pixelcnn_sampling_on_the_rows_so_far_matches_the_whole_grid():
    """Sampling passes only the rows up to the current one (the stacks never look below): the logits there and
    the codes drawn equal those of passes over the whole grid, position by position (the plain sampler)."""
    torch.manual_seed(0)
    prior = GatedPixelCNN(16, (5, 6), channels=8, layers=3).eval()
    codes = torch.randint(0, 16, (4, 5, 6))
    with torch.no_grad():
        whole = prior.logits(codes)
        for i in range(5):
            torch.testing.assert_close(prior.logits(codes[:, : i + 1])[:, :, i], whole[:, :, i], rtol=1e-5, atol=1e-5)
    fast = prior.sample(8, generator=torch.Generator().manual_seed(3))
    plain = torch.zeros(8, 5, 6, dtype=torch.long)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for i in range(5):
            for j in range(6):
                logits = prior.logits(plain)[:, :, i, j].float()
                u = torch.rand(logits.shape, generator=gen).clamp(1e-9, 1 - 1e-9)
                plain[:, i, j] = (logits - torch.log(-torch.log(u))).argmax(dim=1)
    assert torch.equal(fast, plain)


def test_evaluation_reuses_a_batchs_encoding_only_while_input_and_weights_are_unchanged():
    """vae-eval asks a VQ-VAE for the bound, the posterior's point and the code counts of each batch: the encoding
    is computed once (the encoder is called once), and never reused for a changed input or changed weights."""
    model = build_model(
        model_config(VQVAEConfig(codebook_size=8, code_dim=4, widths=[4, 8], blocks=1, commitment=0.25)), (1, 8, 8)
    ).eval()
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lw = model.log_weights(x, None, torch.zeros(3, 5, model.latent_dim))
        mu, _ = model.encode(x)
        codes = model.codes(x)
        assert len(calls) == 1
        fresh_codes, fresh_mu = model.codes(x.clone()), model.encode(x.clone())[0]  # another tensor: computed anew
        assert len(calls) == 3 and torch.equal(codes, fresh_codes) and torch.equal(mu, fresh_mu)
        assert torch.equal(lw[3][0], mu)
        x.add_(0.5)  # the same tensor, changed in place
        assert torch.equal(model.codes(x), model.codes(x.clone())) and len(calls) == 5
        next(model.encoder.parameters()).mul_(-1)  # new weights (an optimizer step, a loaded checkpoint)
        assert torch.equal(model.codes(x), model.codes(x.clone())) and len(calls) == 7
    model.train()
    model.codes(x)
    model.codes(x)
    assert len(calls) == 9  # training: never reused
