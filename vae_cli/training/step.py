"""One training step (forward, loss, backward, clipping, the checks of a bad update, the update), as fast as the
device allows.

The trainer's hot loop calls the step once per batch and gets a detached tensor of the objective's terms
(``objective.terms``, in that order) on the device, read back to the host only when it logs, and what was non-finite
if anything was (then nothing was applied, and the trainer's NaN policy decides). One path serves the eager step and
the captured one (CUDA graphs): ``forward_backward``, ``clip`` (``trainer.grad_clip``, the only place it happens),
then ``apply_update`` (the skip guard, the optimizer, the weight average: ``updates.py``).
What runs is a ``TrainingModule``: the model and the objective together, so DDP all-reduces the gradients of both
(an objective can have parameters of its own, e.g. FactorVAE's discriminator) and ``torch.compile`` sees one
function.
Speed options (``TrainerConfig``) change how the step runs, never what it computes:

- ``precision=auto`` (the default): bf16 where the device has native bf16 matmuls (``resolve_precision``), else fp32.
- ``precision=bf16``: the model runs under bf16 autocast (matmuls and convolutions in bf16, about 2-5x faster on
  CPUs with AVX512-BF16/AMX and on GPUs); weights, gradients, optimizer state and the loss sums stay fp32. (Before
  torch 2.14 oneDNN's bf16 convolution backward fell back to a reference kernel on CPU, so convolutions were kept
  fp32 there; in 2.14 it is 1.3-3x faster than fp32, README "Performance".)
- ``compile=true``: ``torch.compile`` of forward + loss (AOTAutograd compiles the backward with it).
- ``cuda_graphs=true`` (CUDA only): the whole step, optimizer included, is captured once and replayed, so a step
  costs one launch instead of dozens.
- ``channels_last`` (conv models on CUDA, and on CPU in bf16): NHWC weights and inputs for the fastest kernels.

Batches of another size than the first (the last, partial batch of an epoch) run eagerly, so neither a
recompile nor a second capture is ever paid for them.
"""

from __future__ import annotations

import math
import os
from contextlib import AbstractContextManager

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vae_cli.config.enums import NanPolicy, Precision
from vae_cli.config.training import TrainerConfig
from vae_cli.models.layout import has_convolutions
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective
from vae_cli.process.device import native_bf16
from vae_cli.process.distributed import Distributed, any_rank
from vae_cli.process.errors import ConfigError, TrainingError
from vae_cli.training.updates import UpdateGuard, WeightAverage

# Eager steps before a CUDA graph is captured: cuBLAS/cuDNN handles, the optimizer's state and (with compile)
# the compiled kernels must all exist before capture. They are ordinary training steps on real batches.
GRAPH_WARMUP_STEPS = 3


def resolve_precision(precision: Precision | str, device: torch.device) -> tuple[Precision, str]:
    """The precision a run trains in (fp32 or bf16) and why: ``auto`` picks bf16 where ``device`` multiplies in
    bf16 natively (measured on an AVX512-BF16 CPU: 4-5x the fp32 GEMM rate; README "Performance"), fp32 where bf16
    would be emulated (slower than fp32). The same under ``trainer.compile``: on this project's CPU a compiled fp32
    step beat the eager bf16 one on 5 of 16 models (by at most 1.32x), a compiled bf16 step was 1.1-2.0x faster on
    11 (README "torch.compile per model"); a model whose bf16 kernels inductor cannot build stops at its first step
    with the fix (``compile_failure``)."""
    chosen = Precision(precision)
    if chosen != Precision.auto:
        return chosen, f"trainer.precision={chosen.value}"
    why = native_bf16(device)
    if why is not None:
        return Precision.bf16, f"auto: {why}; trainer.precision=fp32 for full precision"
    return Precision.fp32, f"auto: no native bf16 matmuls on {device.type}"


def check_compile_toolchain(device: torch.device) -> None:
    """Refuse ``trainer.compile=true`` on a CPU without a working C++ compiler, before any data is loaded: inductor
    builds a CPU step's kernels with one (``$CXX``, else g++) at the first step, and would fail there with a long
    traceback from inside torch."""
    if device.type != "cpu":
        return
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        raise ConfigError(
            "trainer.compile=true on a CPU needs a C++ compiler at run time (torch.compile builds the step's kernels "
            f"with $CXX, else g++), and {os.environ.get('CXX') or 'g++'} does not work here. Install one "
            "(Debian/Ubuntu: apt-get install g++), point CXX at one, or train without compiling: trainer.compile=false "
            "(the same computation, eagerly)."
        ) from None


def compile_options(device: torch.device) -> dict[str, object] | None:
    """inductor's options for the compiled step. On a CPU the compiled graph calls its kernels from generated C++
    instead of Python (``cpp_wrapper``): six MLP steps of the peer table were 1.02-1.09x faster with it, in one
    process (README "inductor's C++ wrapper"); the first compile takes ~4 s longer (VAE: 21 s instead of 16 s),
    later runs load it from inductor's cache. Not on CUDA, where it was not measured."""
    return {"cpp_wrapper": True} if device.type == "cpu" else None


def compile_failure(exc: BaseException, bf16: bool) -> TrainingError:
    """The message for a step that torch.compile could not build (raised at the first full-size batch, before
    anything of that step was applied)."""
    while getattr(exc, "inner_exception", None) is not None:  # dynamo wraps what the compiler raised
        exc = exc.inner_exception  # type: ignore[attr-defined]
    text = str(exc).strip()
    first = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
    in_bf16 = " or compile it in fp32 (trainer.precision=fp32)," if bf16 else ""
    return TrainingError(
        f"torch.compile could not build this model's training step ({first[:300]}). Train without it, "
        f"trainer.compile=false (the same computation, eagerly),{in_bf16} and start again; the step that failed "
        "changed nothing, and a run with checkpoints goes on from them: trainer.resume=<run dir> trainer.compile=false."
    )


def portable_optimizer_state(state: dict) -> dict:
    """An optimizer ``state_dict`` that any run can load: CUDA graphs turn ``lr`` into a device tensor and set
    ``capturable``; the checkpoint stores a float and ``False``, so it resumes on CPU, eagerly, or with graphs
    (which convert again at their first step)."""
    for group in state["param_groups"]:
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        if group.get("capturable"):
            group["capturable"] = False
    return state


class TrainingModule(nn.Module):
    """The model and the objective as one module: ``forward(x, y, step)`` is the objective's terms."""

    def __init__(self, model: Model, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return self.objective(self.model, x, y, step)


def optimized_parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every parameter the optimizer updates (the model's and the objective's)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


class TrainStep:
    def __init__(
        self,
        model: Model,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        cfg: TrainerConfig,
        device: torch.device,
        dist: Distributed | None = None,
    ) -> None:
        dist = dist or Distributed()
        if cfg.cuda_graphs and device.type != "cuda":
            raise ConfigError(f"trainer.cuda_graphs=true needs a CUDA device; this run trains on {device}.")
        if cfg.cuda_graphs and dist.enabled:
            raise ConfigError(
                "trainer.cuda_graphs=true is not supported with several processes (torchrun): DDP's gradient "
                "all-reduce runs outside the captured step. Drop trainer.cuda_graphs, or train in one process."
            )
        self.model = model
        self.objective = objective
        self.module: nn.Module = TrainingModule(model, objective)
        self.optimizer = optimizer
        self.parameters = optimized_parameters(optimizer)
        self.grad_clip = cfg.grad_clip
        self.dist = dist
        # A host sync per step costs nothing on CPU; on a GPU only the skip/rollback policies pay for it (they
        # must see a bad step before the optimizer applies it), while "stop" checks at log points and before
        # every checkpoint write, so a bad state is never saved.
        self.check_each_step = device.type != "cuda" or cfg.nan_policy != NanPolicy.stop
        # A NaN policy that acts on a bad gradient needs its norm even without clipping.
        self.norm_needed = cfg.nan_policy != NanPolicy.stop
        # Skipping of bad updates (device-side, so also inside a CUDA graph) and the weight average.
        self.guard = (
            UpdateGuard(cfg.skip_grad_norm, cfg.max_skips_in_a_row, optimizer, device)
            if cfg.skip_grad_norm is not None
            else None
        )
        self.ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.batch_size = cfg.batch_size  # the compiled / captured shape; other sizes (the last batch) run eagerly
        self.device = device
        self.bf16 = resolve_precision(cfg.precision, device)[0] == Precision.bf16
        self.use_graphs = bool(cfg.cuda_graphs)
        # NHWC convolutions: on CUDA (tensor cores), and on a CPU in bf16, where oneDNN's NHWC bf16 kernels are the
        # fastest (a 3x3 64-channel conv's forward + backward: 23-24 ms fp32, 13 ms bf16, 8-13 ms bf16 NHWC).
        self.channels_last = (
            bool(cfg.channels_last)
            and (device.type == "cuda" or (device.type == "cpu" and self.bf16))
            and has_convolutions(model)
        )
        if self.channels_last:
            # Replaces each parameter's data in place: the optimizer keeps the same Parameter objects.
            model.to(memory_format=torch.channels_last)
        if dist.enabled:
            # The step runs through DDP (its backward all-reduces the gradients); everything else (checkpoints,
            # evaluation, images) uses the plain modules, whose parameters DDP shares.
            self.module = DistributedDataParallel(self.module, device_ids=[device] if device.type == "cuda" else None)
        self.compiled = bool(cfg.compile)
        self.fast_forward = (
            torch.compile(self.forward_loss, options=compile_options(device)) if self.compiled else self.forward_loss
        )
        # What a step that torch.compile cannot build raises (dynamo is only imported when compiling).
        self.compile_errors: tuple[type[BaseException], ...] = ()
        if self.compiled:
            from torch._dynamo.exc import BackendCompilerFailed

            self.compile_errors = (BackendCompilerFailed,)
        # The step as a device tensor: an objective's schedules (KL warm-up, capacity) are tensor functions of it, so
        # a compiled function or a captured graph follows them without retracing, and no step needs a host sync.
        self.step_tensor = torch.zeros((), device=device)
        self.graph_steps = 0  # full-size steps taken on the CUDA-graph path (warm-up included)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_x: torch.Tensor | None = None
        self.static_y: torch.Tensor | None = None
        self.static_terms: torch.Tensor | None = None

    def autocast(self) -> AbstractContextManager:
        # cache_enabled=False under graphs: autocast's weight cache must not outlive a capture.
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=not self.use_graphs
        )

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What to back-propagate and the detached terms, in ``objective.terms`` order. The networks run under
        autocast; likelihoods, priors and objectives reduce in fp32 (sums over 784+ pixels need it)."""
        with self.autocast():
            terms = self.module(x, y, step)
        stacked = torch.stack([terms[name].float() for name in self.objective.terms]).detach()
        return self.objective.minimized(terms), stacked

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, str | None]:
        """One optimizer step on batch ``(x, y)`` at global step ``step``. Returns the detached terms and, when the
        loss or the gradient was NaN/Inf (checked where ``check_each_step``), what was (the update then was not
        applied). With CUDA graphs, full-size batches replay the captured step (only nan_policy=stop is allowed
        there, which checks at log points and before every checkpoint)."""
        if self.use_graphs and x.shape[0] == self.batch_size:
            return self._graph_step(x, y, step), None
        if not self.check_each_step:
            return self.whole_step(x, y, step), None
        loss, terms = self.forward_backward(x, y, step)
        # Under torchrun each rank sees only its own loss; they agree, or one would skip/stop while the others wait.
        # One read of the loss, then a host-side test (torch.isfinite(...).item() is three ops more: ~15 us a step).
        if any_rank(not math.isfinite(loss.item()), self.dist, self.device):
            return terms, "NaN/Inf loss"
        norm = self.clip()
        if norm is not None and not math.isfinite(norm.item()):
            return terms, "NaN/Inf gradient"
        self.apply_update(norm)
        return terms, None

    def whole_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        """Forward, backward, clip and update with nothing read back to the host: what a CUDA graph captures, and
        what a GPU runs eagerly under nan_policy=stop. Returns the detached terms."""
        _, terms = self.forward_backward(x, y, step)
        self.apply_update(self.clip())
        return terms

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero the gradients, run forward + loss + backward; returns ``(loss, terms)``."""
        x = self._prepare(x)
        self.optimizer.zero_grad(set_to_none=True)
        self.step_tensor.fill_(step)
        forward = self.fast_forward if x.shape[0] == self.batch_size else self.forward_loss
        try:  # the forward is compiled at its first call, the backward (AOTAutograd) at its own first call
            loss, terms = forward(x, y, self.step_tensor)
            loss.backward()
        except self.compile_errors as exc:
            raise compile_failure(exc, self.bf16) from None
        return loss, terms

    def clip(self) -> torch.Tensor | None:
        """Clip the gradients to ``trainer.grad_clip`` (the only place they are clipped); returns the global norm
        before clipping where it was computed (clipping, the skip guard or a NaN policy needs it), else None. A
        device tensor: no sync. Without any of them a bad gradient shows up as a bad loss one step later, before
        anything is saved."""
        if self.grad_clip is None and not self.norm_needed and self.guard is None:
            return None
        grads = [p for p in self.parameters if p.grad is not None]
        if self.grad_clip is not None:
            return nn.utils.clip_grad_norm_(grads, self.grad_clip)
        return nn.utils.get_total_norm([p.grad for p in grads])

    def apply_update(self, norm: torch.Tensor | None) -> None:
        """The update after backward and clipping: the skip guard's decision (given the norm before clipping), the
        optimizer's step, and the weight average."""
        if self.guard is not None:
            assert norm is not None
            self.guard.decide([p for p in self.parameters if p.grad is not None], norm, clipped_to=self.grad_clip)
            self.guard.step()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update()

    def _graph_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        self.graph_steps += 1
        if self.graph is None:
            if self.graph_steps <= GRAPH_WARMUP_STEPS:
                return self._warmup(x, y, step)
            self._capture(self._prepare(x), y)
        assert self.graph is not None and self.static_x is not None and self.static_terms is not None
        assert self.static_y is not None
        self.static_x.copy_(self._prepare(x))
        self.static_y.copy_(y)
        self.step_tensor.fill_(step)
        self.graph.replay()
        return self.static_terms.clone()

    # ----- CUDA graphs -------------------------------------------------------------------------------------
    def _make_capturable(self) -> None:
        """Adam inside a graph must keep its step count and learning rate on the device: ``capturable`` does the
        first, a tensor ``lr`` the second (the LR scheduler then updates it in place with ``fill_``). Done at the
        first step, after a resume has loaded the optimizer's state."""
        for group in self.optimizer.param_groups:
            group["capturable"] = True
            group["lr"] = torch.tensor(float(group["lr"]), device=self.device)

    def _warmup(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        if self.graph_steps == 1:
            self._make_capturable()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            terms = self.whole_step(x, y, step)
        torch.cuda.current_stream().wait_stream(side)
        return terms

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record one whole step on static buffers. Capturing does not run it; ``__call__`` replays it next."""
        self.static_x = torch.empty_like(x)
        self.static_x.copy_(x)
        self.static_y = y.clone()
        # Gradients set to None before capture are allocated inside the graph's memory pool, so every replay
        # writes fresh gradients (not accumulated ones) into the same place.
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, terms = self.fast_forward(self.static_x, self.static_y, self.step_tensor)
            loss.backward()
            self.apply_update(self.clip())
        self.static_terms = terms
        self.graph = graph
