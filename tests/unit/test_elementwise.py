"""The vectorized ELU / softplus / log-sigmoid (vae_cli/models/elementwise.py) against torch's own."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from vae_cli.models.elementwise import elu, elu_and_slope, log_sigmoid, log_sigmoid_values, softplus

CASES = [(elu, F.elu), (softplus, F.softplus), (log_sigmoid, F.logsigmoid)]


@pytest.mark.parametrize(("ours", "torchs"), CASES)
def test_values_and_gradients_match_torch(ours, torchs):
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(4000, generator=g) * 6, torch.tensor([0.0, -0.0, 30.0, -30.0, 1e-8, -1e-8])])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.testing.assert_close(ours(a), torchs(b), rtol=2.5e-7, atol=2e-7)  # one ulp, or 1e-7 near 0
    w = torch.randn(x.shape, generator=g)
    (ours(a) * w).sum().backward()
    (torchs(b) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)
    # bf16 in, bf16 out (the autocast step), close to torch's at bf16's resolution.
    torch.testing.assert_close(ours(x.bfloat16()).float(), torchs(x.bfloat16()).float(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(("ours", "torchs"), CASES)
def test_first_and_second_derivatives_pass_gradcheck(ours, torchs):
    # Away from 0, where ELU's second derivative jumps (finite differences straddling it would disagree).
    x = (torch.rand(12, dtype=torch.double) + 0.05) * torch.tensor([1.0, -1.0]).repeat(6).double() * 3
    x.requires_grad_()
    assert torch.autograd.gradcheck(ours, (x,))
    assert torch.autograd.gradgradcheck(ours, (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_the_autograd_free_forms_give_the_autograd_functions_values_bit_for_bit(dtype):
    # elu_and_slope / log_sigmoid_values serve autograd functions with their own backward (the IAF step); their
    # values must be elu's and log_sigmoid's exactly, and the slope elu's derivative (up to its underflow to 0).
    x = (torch.randn(4000, generator=torch.Generator().manual_seed(7)) * 30).to(dtype)
    x[:3] = torch.tensor([0.0, -0.0, 1e-30])
    y, slope = elu_and_slope(x)
    assert torch.equal(y, elu(x)) and torch.equal(log_sigmoid_values(x), log_sigmoid(x))
    xg = x.double().requires_grad_()
    F.elu(xg).sum().backward()
    torch.testing.assert_close(slope.double(), xg.grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=1e-30)
