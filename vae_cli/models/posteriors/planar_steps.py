"""The T planar steps of ``PlanarPosterior.transform`` as one autograd function with a hand-written backward.

Why: a step works on [B, D] tensors (128 x 20 in training), so its cost is the number of operations, not their
size: through autograd the T = 10 steps were ~50 recorded ops forward and ~60 backward nodes, each ~5-10 us on a
CPU, ~2.5 ms of a ~5 ms training step. Written out, the forward is 3 ops per step with no autograd record, and the
backward 4 ops per step plus a few batched over the steps.

The steps, for flow parameters u_hat_t, w_t ``[B, D]`` and b_t ``[B]`` (u_hat already made invertible):

    a_t = tanh(w_t . z_(t-1) + b_t),   z_t = z_(t-1) + u_hat_t a_t,
    log |det| = sum_t log(|1 + (1 - a_t^2) w_t . u_hat_t| + 1e-12)

and their derivative, back from t = T (g: the gradient reaching z_t; s_t = 1 - a_t^2; r_t = d log|det| / d det_t):

    g_a_t = g . u_hat_t - 2 a_t r_t (w_t . u_hat_t),   g_pre_t = g_a_t s_t,   g <- g + g_pre_t w_t,
    dL/du_hat_t = sum g a_t + r_t s_t w_t,   dL/dw_t = sum g_pre_t z_(t-1) + r_t s_t u_hat_t,   dL/db_t = sum g_pre_t

(sums over the leading sample axes: IWAE's K draws share their image's flows). Computed in fp32 at least (under bf16
autocast the old autograd path ran the steps and summed the log-determinants in bf16); gradients come back in the
inputs' dtypes. Pinned against autograd through ``planar_step`` in float64 and by gradcheck
(tests/unit/test_posteriors.py). Once differentiable: no objective differentiates a posterior's backward.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

LOG_DET_FLOOR = 1e-12  # log(|det| + floor): finite where a step is (numerically) singular


class PlanarStepsFunction(torch.autograd.Function):
    """``apply(z, u_hat, w, b) -> (z_T, log |det|)``: z ``[..., B, D]``, u_hat and w ``[B, T, D]``, b ``[B, T]``."""

    @staticmethod
    def forward(ctx, z, u_hat, w, b):  # type: ignore[override]
        ctx.dtypes = (z.dtype, u_hat.dtype, w.dtype, b.dtype)
        wide = torch.promote_types(torch.promote_types(z.dtype, u_hat.dtype), torch.float32)
        with torch.autocast(z.device.type, enabled=False):
            u_hat_w, w_w, b_w = u_hat.to(wide), w.to(wide), b.to(wide)
            z = z.to(wide)
            # What the backward needs is kept only where there will be one (vae-eval's IW estimate draws K x B
            # samples under no_grad: T copies of z would be its largest allocation).
            keep = any(ctx.needs_input_grad)
            inputs, activations = [], []
            for u_t, w_t, b_t in zip(u_hat_w.unbind(1), w_w.unbind(1), b_w.unbind(1), strict=True):
                if keep:
                    inputs.append(z)
                a = torch.tanh(torch.linalg.vecdot(z, w_t) + b_t)  # [..., B]
                z = torch.addcmul(z, u_t, a.unsqueeze(-1))
                activations.append(a)
            acts = torch.stack(activations)  # [T, ..., B]
            slope = 1 - acts.square()  # tanh' = 1 - a^2
            w_dot_u = torch.linalg.vecdot(w_w, u_hat_w).t()  # [T, B]
            det = torch.addcmul(
                torch.ones_like(slope), slope, w_dot_u.view(w_dot_u.shape[0], *[1] * (acts.dim() - 2), -1)
            )
            log_det = torch.log(det.abs() + LOG_DET_FLOOR).sum(0)
        if keep:
            ctx.save_for_backward(u_hat_w, w_w, torch.stack(inputs), acts, slope, det, w_dot_u)
        return z, log_det

    @staticmethod
    @once_differentiable
    def backward(ctx, g_z, g_log_det):  # type: ignore[override]
        u_hat, w, inputs, acts, slope, det, w_dot_u = ctx.saved_tensors
        wide = u_hat.dtype
        g_z, g_log_det = g_z.to(wide), g_log_det.to(wide)
        # d log(|det| + floor) / d det, each step's share of the log-determinant's gradient
        r = g_log_det * torch.sign(det) / (det.abs() + LOG_DET_FLOOR)  # [T, ..., B]
        shape = (w_dot_u.shape[0], *[1] * (acts.dim() - 2), -1)
        g_act_from_det = -2 * acts * r * w_dot_u.view(shape)
        flows = acts.shape[0]
        g_outputs, g_pres = [None] * flows, [None] * flows
        for t in range(flows - 1, -1, -1):
            g_outputs[t] = g_z
            g_pre = (torch.linalg.vecdot(g_z, u_hat[:, t]) + g_act_from_det[t]) * slope[t]
            g_z = torch.addcmul(g_z, g_pre.unsqueeze(-1), w[:, t])
            g_pres[t] = g_pre
        g_out, g_pre = torch.stack(g_outputs), torch.stack(g_pres)  # [T, ..., B, D], [T, ..., B]
        sample_axes = tuple(range(1, acts.dim() - 1))  # the leading axes between T and B
        g_r_slope = (r * slope).sum(sample_axes) if sample_axes else r * slope  # [T, B]
        g_w_dot_u = g_r_slope.t().unsqueeze(-1)  # [B, T, 1]
        g_u_hat = _sum_samples(g_out * acts.unsqueeze(-1), sample_axes).transpose(0, 1) + g_w_dot_u * w
        g_w = _sum_samples(g_pre.unsqueeze(-1) * inputs, sample_axes).transpose(0, 1) + g_w_dot_u * u_hat
        g_b = _sum_samples(g_pre, sample_axes).t()
        z_dtype, u_dtype, w_dtype, b_dtype = ctx.dtypes
        return g_z.to(z_dtype), g_u_hat.to(u_dtype), g_w.to(w_dtype), g_b.to(b_dtype)


def _sum_samples(t: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    return t.sum(axes) if axes else t
