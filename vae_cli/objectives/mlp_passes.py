"""One forward of an MLP discriminator for both of a step's passes over the same rows (loss=factor_vae, aae).

FactorVAE's total-correlation term evaluates the discriminator D on the live codes with D's parameters stopped (the
``frozen`` pass: its gradient reaches the encoder, never D), and D's own loss evaluates D on the same codes detached,
beside the permuted ones (the ``trained`` pass: its gradient reaches D's parameters, never the encoder); the AAE's
fooling term and its discriminator's loss share the codes the same way. On the shared rows the two passes compute
the same numbers, so here they are computed once (``SharedMLPPasses``), and the backward runs the two gradient
streams through the saved activations: the trained stream over every row into the weights and biases, as autograd
would, the frozen stream over the shared rows into the input only (no weight gradient, as with stopped
parameters). What it saves is the frozen forward: for FactorVAE's 5 x 1000 discriminator and a batch of 128, one
GEMM of 128 rows per layer (~1 GFLOP of the step's ~8.7) and its casts and activations.

Only for a discriminator that is an ``nn.Sequential`` of ``Linear`` (with bias) and ``LeakyReLU`` layers ending in a
``Linear`` (``mlp_layers``); any other falls back to the two passes. Pinned against the two passes' values and
gradients, fp32 and bf16, and by a gradcheck of each stream (tests/unit/test_autoencoders.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable


def mlp_layers(module: nn.Module) -> list[tuple[str, float | None]] | None:
    """``[(linear layer's name, slope of the LeakyReLU after it or None for the last layer), ...]`` when ``module``
    is an ``nn.Sequential`` of Linear (with bias) and LeakyReLU layers alternating and ending in a Linear; else
    None."""
    if not isinstance(module, nn.Sequential):
        return None
    children = list(module.named_children())
    if len(children) % 2 != 1:
        return None
    layers: list[tuple[str, float | None]] = []
    for i in range(0, len(children), 2):
        name, linear = children[i]
        if type(linear) is not nn.Linear or linear.bias is None:
            return None
        slope = None
        if i + 1 < len(children):
            activation = children[i + 1][1]
            # A negative slope would flip the sign the backward reads the activation's slope from.
            if type(activation) is not nn.LeakyReLU or activation.negative_slope < 0:
                return None
            slope = float(activation.negative_slope)
        layers.append((name, slope))
    return layers


class SharedMLPPasses(torch.autograd.Function):
    """``(mlp(shared) with its parameters stopped, mlp(cat([shared.detach(), extra])))`` from one forward.

    ``params``: each layer's weight and bias, in order (the tensors the trained pass differentiates: the parameters,
    or their autocast-dtype casts); ``slopes``: each hidden layer's LeakyReLU slope. The layers run in the weights'
    dtype (bf16 under autocast, as autocast runs a Linear); the frozen output's gradient goes to ``shared`` only
    (in its dtype), the trained output's to ``params`` only."""

    @staticmethod
    def forward(ctx, shared: torch.Tensor, extra: torch.Tensor, slopes: Sequence[float], *params: torch.Tensor):  # type: ignore[override]
        weights, biases = params[0::2], params[1::2]
        h = torch.cat([shared.detach(), extra.detach()]).to(weights[0].dtype)
        inputs = []
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            inputs.append(h)
            h = torch.addmm(b, h, w.t())
            if i < len(slopes):
                h = nn.functional.leaky_relu(h, slopes[i])
        ctx.save_for_backward(*inputs, *weights)
        ctx.slopes = tuple(slopes)
        ctx.rows = shared.shape[0]
        ctx.shared_dtype = shared.dtype
        return h[: shared.shape[0]].clone(), h

    @staticmethod
    @once_differentiable
    def backward(ctx, g_frozen: torch.Tensor | None, g_trained: torch.Tensor | None):  # type: ignore[override]
        saved = ctx.saved_tensors
        layers = len(saved) // 2
        inputs, weights = saved[:layers], saved[layers:]
        rows = ctx.rows
        param_grads: list[torch.Tensor | None] = [None] * (2 * layers)
        want_params = any(ctx.needs_input_grad[3:])
        g_t = g_trained.to(weights[0].dtype) if (g_trained is not None and want_params) else None
        g_f = g_frozen.to(weights[0].dtype) if (g_frozen is not None and ctx.needs_input_grad[0]) else None
        for i in reversed(range(layers)):
            w = weights[i]
            if g_t is not None:
                param_grads[2 * i] = g_t.t().mm(inputs[i])
                param_grads[2 * i + 1] = g_t.sum(0)
            if i == 0:
                break
            # Back through the LeakyReLU whose output is this layer's input (its sign is its input's: slope > 0).
            slope, activation = ctx.slopes[i - 1], inputs[i]
            if g_t is not None:
                g_t = torch.ops.aten.leaky_relu_backward(g_t.mm(w), activation, slope, True)
            if g_f is not None:
                g_f = torch.ops.aten.leaky_relu_backward(g_f.mm(w), activation[:rows], slope, True)
        grad_shared = g_f.mm(weights[0]).to(ctx.shared_dtype) if g_f is not None else None
        return (grad_shared, None, None, *param_grads)
