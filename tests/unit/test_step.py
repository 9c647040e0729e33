"""The training step: the fast BCE is the same function as torch's, and every speed option computes the same step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import model_config
from vae_cli.config.architectures import ConvConfig, HVAEConfig, MLPConfig, ResNetConfig
from vae_cli.config.enums import Precision
from vae_cli.config.likelihoods import (
    ContinuousBernoulliConfig,
    GaussianLikelihoodConfig,
    LogisticMixtureConfig,
)
from vae_cli.config.objectives import ELBOConfig
from vae_cli.config.training import OptimConfig, TrainerConfig
from vae_cli.models.build import build_model
from vae_cli.models.likelihoods.bernoulli import BCEWithLogitsPerSample, BernoulliLikelihood
from vae_cli.objectives.base import ObjectiveContext
from vae_cli.objectives.elbo import ELBO
from vae_cli.process.errors import ConfigError
from vae_cli.training.optim import build_optimizer
from vae_cli.training.step import TrainStep

CTX = ObjectiveContext(train_size=192, latent_dim=4)
NO_LABELS = torch.full((32,), -1)


def _reference_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def test_fast_bce_matches_torch_in_value_and_gradient_even_for_extreme_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 1, 28, 28, generator=g) * 8
    logits[0, 0, 0, :4] = torch.tensor([-120.0, -30.0, 30.0, 120.0])  # exp would overflow in a naive form
    x = torch.rand(16, 1, 28, 28, generator=g)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    weights = torch.rand(16, generator=g)
    ours = -BernoulliLikelihood().log_prob(x, a)
    ref = _reference_nll(b, x)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-3)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(ours).all() and torch.isfinite(a.grad).all()


def test_fast_bce_passes_gradcheck_for_logits_and_data():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, dtype=torch.double, generator=g).requires_grad_()
    x = torch.rand(3, 7, dtype=torch.double, generator=g).requires_grad_()
    # The Function itself: log_prob casts to fp32, too coarse for finite differences.
    assert torch.autograd.gradcheck(BCEWithLogitsPerSample.apply, (logits, x))


def _setup(precision: Precision = Precision.fp32, seed: int = 0, **trainer_kw):
    torch.manual_seed(seed)
    model = build_model(model_config(MLPConfig(hidden_dims=[64], latent_dim=4)), (1, 28, 28))
    loss_fn = ELBO(ELBOConfig(kl_warmup_steps=10), CTX)
    optimizer = build_optimizer(OptimConfig(), model.parameters(), fused=True)
    cfg = TrainerConfig(precision=precision, batch_size=32, **trainer_kw)
    return model, loss_fn, optimizer, TrainStep(model, loss_fn, optimizer, cfg, torch.device("cpu"))


def _batches(n: int = 6, batch: int = 32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.rand(batch, 1, 28, 28, generator=g) for _ in range(n)]


def test_fp32_step_is_exactly_the_textbook_step():
    model, _, _, step = _setup()
    ref_model, ref_loss, ref_opt, _ = _setup()
    for i, x in enumerate(_batches()):
        torch.manual_seed(100 + i)
        terms, _ = step(x, NO_LABELS, i)
        torch.manual_seed(100 + i)
        t = ref_loss(ref_model, x, None, torch.tensor(float(i)))
        ref_opt.zero_grad(set_to_none=True)
        t["loss"].backward()
        ref_opt.step()
        assert terms.shape == (4,) and not terms.requires_grad
        assert torch.equal(terms, torch.stack([t["loss"], t["recon"], t["kl"], t["elbo"]]).detach())
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_bf16_step_keeps_fp32_weights_and_follows_the_fp32_trajectory():
    m32, *_, s32 = _setup(Precision.fp32)
    m16, *_, s16 = _setup(Precision.bf16)
    for i, x in enumerate(_batches(10)):
        torch.manual_seed(i)
        t32, _ = s32(x, NO_LABELS, i)
        torch.manual_seed(i)
        t16, _ = s16(x, NO_LABELS, i)
        # Same terms within bf16 rounding of the logits (the loss itself is summed in fp32).
        assert abs(t16[0] - t32[0]) / t32[0] < 0.01
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    for p, q in zip(m16.parameters(), m32.parameters(), strict=True):
        assert (p - q).abs().max() < 0.01


def test_a_partial_last_batch_runs_and_terms_are_per_sample_means():
    _, loss_fn, _, step = _setup()
    big, small = torch.rand(32, 1, 28, 28), torch.rand(5, 1, 28, 28)
    step(big, NO_LABELS, 0)
    terms, _ = step(small, NO_LABELS[:5], 1)
    loss, recon, kl, elbo = terms.tolist()
    assert recon > 0 and kl >= 0 and elbo == pytest.approx(-(recon + kl), rel=1e-6)
    assert loss == pytest.approx(recon + loss_fn.schedule_values(1)["kl_weight"] * kl, rel=1e-6)


def test_cuda_graphs_on_cpu_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="cuda_graphs"):
        _setup(cuda_graphs=True)


def test_bf16_on_cpu_runs_convolutions_and_linear_layers_in_bf16_channels_last():
    torch.manual_seed(0)
    model = build_model(model_config(ConvConfig(conv_channels=[4, 8], latent_dim=4)), (1, 28, 28))
    optimizer = build_optimizer(OptimConfig(), model.parameters(), fused=True)
    cfg = TrainerConfig(precision=Precision.bf16, batch_size=16)
    step = TrainStep(model, ELBO(ELBOConfig(), CTX), optimizer, cfg, torch.device("cpu"))
    dtypes: dict[str, torch.dtype] = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            module.register_forward_hook(lambda m, i, o, name=name: dtypes.__setitem__(name, o.dtype))
    terms, _ = step(torch.rand(16, 1, 28, 28), NO_LABELS[:16], 0)
    assert torch.isfinite(terms).all()
    convs = {n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}
    # torch 2.14's oneDNN has fast bf16 convolution kernels on CPU (the backward used to fall back to a reference
    # kernel): every layer runs in bf16, the convolutions on NHWC weights.
    assert convs and all(dtypes[n] == torch.bfloat16 for n in dtypes)
    assert step.channels_last
    conv_weights = [m.weight for n, m in model.named_modules() if n in convs]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
    assert all(w.dtype == torch.float32 for w in conv_weights)  # master weights stay fp32


def test_checkpointed_optimizer_state_loads_anywhere_after_cuda_graphs_changed_it():
    from vae_cli.training.step import portable_optimizer_state

    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer(OptimConfig(lr=0.01), [p], fused=True)
    p.grad = torch.ones(3)
    opt.step()
    opt.param_groups[0]["lr"] = torch.tensor(0.005)  # what graphs leave behind
    opt.param_groups[0]["capturable"] = True
    state = portable_optimizer_state(opt.state_dict())
    group = state["param_groups"][0]
    assert group["lr"] == pytest.approx(0.005) and isinstance(group["lr"], float) and group["capturable"] is False
    fresh = build_optimizer(OptimConfig(), [torch.nn.Parameter(torch.zeros(3))], fused=True)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.005)
    assert opt.param_groups[0]["capturable"] is True  # the live optimizer is untouched


@pytest.mark.parametrize(
    "setting, load_1min, runnable_others, env",
    [
        ("auto", 0.2, 0, {"GOMP_SPINCOUNT": "1000"}),  # idle: bounded spin
        ("auto", 3.0, 2, {"OMP_WAIT_POLICY": "PASSIVE"}),  # busy now and over the last minute: sleep
        ("auto", 3.0, 0, {"GOMP_SPINCOUNT": "1000"}),  # the average still shows a job that has just ended
        ("auto", 3.0, None, {"OMP_WAIT_POLICY": "PASSIVE"}),  # no /proc: the average alone decides
        ("auto", 0.1, 5, {"GOMP_SPINCOUNT": "1000"}),  # a momentary burst alone does not make the machine busy
        ("spin", 9.0, 9, {"OMP_WAIT_POLICY": "ACTIVE"}),
        ("sleep", 0.0, 0, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ],
)
def test_cpu_wait_policy_sleeps_only_when_asked_or_the_machine_is_busy(setting, load_1min, runnable_others, env):
    from vae_cli.config.enums import CpuWait
    from vae_cli.process.cpu_threads import MachineLoad, choose_wait_env

    assert choose_wait_env(CpuWait(setting), MachineLoad(load_1min, runnable_others, cpus=2)) == env


def test_machine_load_is_read_from_the_kernel():
    from vae_cli.process.cpu_threads import read_machine_load

    load = read_machine_load()
    assert load.cpus >= 1 and load.load_1min >= 0.0
    if Path("/proc/loadavg").exists():
        assert load.runnable_others is not None and load.runnable_others >= 0


def test_cpu_wait_policy_leaves_the_users_environment_and_a_started_runtime_alone(monkeypatch):
    from vae_cli.config.enums import CpuWait
    from vae_cli.process.cpu_threads import apply_wait_policy

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert "set by the environment" in apply_wait_policy(CpuWait.sleep)
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert "already started" in apply_wait_policy(CpuWait.sleep)  # torch is imported in this process
    assert "OMP_WAIT_POLICY" not in __import__("os").environ


SYNCS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")


class HostSync(AssertionError):
    pass


@pytest.fixture
def no_host_sync(monkeypatch):
    """Within the block, reading a tensor's value on the host (what would stall a GPU every step) raises."""
    active = {"on": False}

    def guard(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if active["on"]:
                raise HostSync(f"Tensor.{name} during the step")
            return original(self, *args, **kwargs)

        return wrapper

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, guard(name))

    class Switch:
        def __enter__(self):
            active["on"] = True

        def __exit__(self, *exc):
            active["on"] = False

    return Switch()


MODELS = {
    "resnet + logistic mixture": (
        ResNetConfig(widths=[4, 8], blocks=1, latent_dim=4),
        LogisticMixtureConfig(components=2),
    ),
    "hvae + continuous bernoulli": (HVAEConfig(layers=2, latent_channels=2, widths=[4, 8], blocks=1), None),
    "mlp + learned gaussian": (MLPConfig(hidden_dims=[16], latent_dim=4), GaussianLikelihoodConfig(std="learned")),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_the_whole_step_with_guard_and_average_reads_nothing_back_to_the_host(name, no_host_sync):
    """What the CUDA-graph path runs (forward, backward, clipping, the skip decision, Adam, the average) must
    not wait for the device: every decision stays a tensor."""
    arch, likelihood = MODELS[name]
    lik = likelihood or ContinuousBernoulliConfig()
    torch.manual_seed(0)
    model = build_model(model_config(arch, likelihood=lik), (1, 28, 28))
    context = ObjectiveContext(train_size=64, latent_dim=model.latent_dim, layer_names=model.layer_names)
    objective = ELBO(ELBOConfig(kl_warmup_steps=10, free_bits=0.1 if "hvae" in name else 0.0), context)
    optimizer = build_optimizer(OptimConfig(), model.parameters(), fused=True)
    cfg = TrainerConfig(batch_size=8, grad_clip=100.0, skip_grad_norm=1e-3, max_skips_in_a_row=1, ema_decay=0.9)
    step = TrainStep(model, objective, optimizer, cfg, torch.device("cpu"))
    x = torch.randint(0, 256, (8, 1, 28, 28)).float() / 255
    before = [p.detach().clone() for p in model.parameters()]
    with no_host_sync:
        for i in range(4):
            terms = step.whole_step(x, torch.zeros(8, dtype=torch.long), i)
    assert torch.isfinite(terms).all()
    assert step.guard.skipped.item() == 2  # a threshold every step exceeds: skip, apply, skip, apply
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_auto_precision_is_bf16_only_where_the_device_multiplies_in_bf16_natively(monkeypatch):
    import vae_cli.training.step as step_module
    from vae_cli.process.device import native_bf16
    from vae_cli.training.step import resolve_precision

    cpu = torch.device("cpu")
    flags = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert (native_bf16(cpu) is not None) == flags
    assert native_bf16(torch.device("mps")) is None
    # The explicit choices are kept whatever the device has.
    assert resolve_precision("fp32", cpu)[0] == Precision.fp32
    assert resolve_precision(Precision.bf16, cpu)[0] == Precision.bf16
    monkeypatch.setattr(step_module, "native_bf16", lambda device: "this CPU has AMX bf16 matmuls")
    chosen, why = resolve_precision("auto", cpu)
    assert chosen == Precision.bf16 and "AMX" in why and "trainer.precision=fp32" in why
    assert _setup(Precision.auto)[3].bf16
    # The same under trainer.compile (a compiled bf16 step is the fastest on such a CPU; README).
    assert _setup(Precision.auto, compile=True)[3].bf16
    monkeypatch.setattr(step_module, "native_bf16", lambda device: None)
    chosen, why = resolve_precision("auto", cpu)
    assert chosen == Precision.fp32 and "no native bf16" in why
    assert not _setup(Precision.auto)[3].bf16


def test_a_compiled_cpu_step_calls_its_kernels_from_cpp():
    # inductor's cpp_wrapper: the compiled forward and backward call their kernels from generated C++, not from a
    # Python wrapper (1.02-1.09x faster MLP steps; README "inductor's C++ wrapper"). A fresh cache, so that the
    # code is generated here and not loaded.
    from torch._inductor.utils import fresh_inductor_cache, run_and_get_code

    torch._dynamo.reset()
    with fresh_inductor_cache():
        model, _, _, step = _setup(Precision.bf16, compile=True)
        x, y = _batches(1)[0], torch.full((32,), -1)
        before = [p.detach().clone() for p in model.parameters()]
        _, codes = run_and_get_code(lambda: step(x, y, 0))
    assert len(codes) == 2  # the forward and AOTAutograd's backward
    assert all("CppWrapperCodeCache" in code and 'extern "C"' in code for code in codes)
    # ... and the step trained: every parameter moved.
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_a_step_that_torch_compile_cannot_build_stops_with_the_fix_and_changes_nothing():
    from torch._dynamo.exc import BackendCompilerFailed

    from vae_cli.process.errors import TrainingError

    for precision in (Precision.bf16, Precision.fp32):
        model, _, optimizer, step = _setup(precision, compile=True)
        before = [p.detach().clone() for p in model.parameters()]

        def unbuildable(*args, **kwargs):
            # What inductor raises when its C++ kernels do not build (wrapped by dynamo).
            raise BackendCompilerFailed(lambda *a: None, RuntimeError("CppCompileError: C++ compile error"), None)

        step.fast_forward = unbuildable
        with pytest.raises(TrainingError) as raised:
            step(_batches(1)[0], NO_LABELS, 0)
        message = str(raised.value)
        assert "torch.compile could not build" in message and "CppCompileError" in message
        assert "trainer.compile=false" in message
        assert ("trainer.precision=fp32" in message) == (precision == Precision.bf16)
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        assert not optimizer.state  # no update was applied
