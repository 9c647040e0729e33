"""torch.compile per model: each peer-table model's training step eager and compiled, side by side in one process.

    python benchmarks/compile_ab.py                          # every row of benchmarks/peers.py (~20 min)
    python benchmarks/compile_ab.py --models vae iaf planar  # some rows

For each row of ``benchmarks/peers.py`` (its vae-cli overrides: the classic MLP 784-400-20, batch 128) three steps
are built with ``vae-train``'s own builders and ``TrainStep`` (``posterior_ab.build_step``): eager at the run's
default precision (``trainer.precision=auto``: bf16 on a CPU with native bf16 matmuls), compiled in fp32 and
compiled in bf16 (``trainer.compile=true``). Each one's first 10 steps are timed (the compile is in them: dynamo's
trace, AOTAutograd, inductor's C++ build, or its on-disk cache), then blocks of steps of the three alternate, the
order reversed every other block (this machine's speed moves by up to 50% within minutes; only figures from one
process compare). Prints a markdown table: median ms per step, each compiled step's speed-up over the eager one,
the bf16 compile's seconds and the epochs of 60k images after which it has paid for itself. The batch is a fixed
random binary image batch: the step's cost does not depend on the pixels.

``--python-wrapper-too`` adds the bf16 step compiled as before vae-train passed inductor ``cpp_wrapper`` on a CPU
(the compiled graph calls its kernels from Python): what the C++ wrapper gives, in the same process.

A row whose objective cannot be compiled (vae-train refuses it before training, e.g. RAE's gradient penalty, a
double backward) is reported as refused, not timed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import ROWS, SHORT
from posterior_ab import build_step, compose_train_config

from vae_cli.process import allocator
from vae_cli.process.errors import VaeCliError

MODES = {  # label: extra overrides
    "eager": [],
    "compiled fp32": ["trainer.compile=true", "trainer.precision=fp32"],
    "compiled bf16": ["trainer.compile=true", "trainer.precision=bf16"],
}
PYTHON_WRAPPER = "compiled bf16, Python wrapper"
WARM_STEPS = 10
STEPS_PER_EPOCH = -(-60_000 // 128)


def refused_reason(overrides: list[str]) -> str | None:
    """What vae-train says before training when it refuses to compile this config (None: it compiles)."""
    from vae_cli.config.validate import validate

    try:
        validate(compose_train_config([*overrides, "trainer.compile=true"]))
    except VaeCliError as exc:
        return str(exc).splitlines()[-1].strip(" -")
    return None


def python_wrapper_step(overrides: list[str]):
    """The bf16 compiled step with inductor's Python wrapper. Its forward is a copy of ``TrainStep.forward_loss``
    under another code object: dynamo caches compiled code per code object, and the copy must not reuse the C++
    wrapper's."""
    from vae_cli.training.step import TrainStep

    _, step = build_step([*overrides, *MODES["compiled bf16"]])
    f = TrainStep.forward_loss
    copy = types.FunctionType(f.__code__.replace(co_name="forward_loss_python_wrapper"), f.__globals__)
    step.fast_forward = torch.compile(types.MethodType(copy, step), options={"cpp_wrapper": False})
    return step


def time_row(
    overrides: list[str], blocks: int, steps: int, python_wrapper: bool = False
) -> dict[str, dict[str, float]]:
    x = (torch.rand(128, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    y = torch.zeros(128, dtype=torch.long)
    torch._dynamo.reset()  # a fresh compile per row: dynamo's cache is per code object, shared by the rows' steps
    built, first = {}, {}
    modes = {**MODES, **({PYTHON_WRAPPER: None} if python_wrapper else {})}
    for mode, extra in modes.items():
        step = python_wrapper_step(overrides) if extra is None else build_step([*overrides, *extra])[1]
        start = time.perf_counter()
        for i in range(WARM_STEPS):
            step(x, y, i)
        first[mode] = time.perf_counter() - start
        built[mode] = step
    times: dict[str, list[float]] = {mode: [] for mode in built}
    for block in range(blocks):
        order = list(built) if block % 2 == 0 else list(reversed(built))
        for mode in order:
            step = built[mode]
            for i in range(3):
                step(x, y, i)
            start = time.perf_counter()
            for i in range(steps):
                step(x, y, i)
            times[mode].append((time.perf_counter() - start) / steps * 1e3)
    return {
        mode: {"ms": statistics.median(times[mode]), "first_s": first[mode], "bf16": built[mode].bf16} for mode in built
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=[], choices=sorted(SHORT.values()), help="only these rows")
    p.add_argument("--blocks", type=int, default=8, help="blocks per mode (alternating)")
    p.add_argument("--steps", type=int, default=30, help="steps per block")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--python-wrapper-too", action="store_true", help="and the bf16 step compiled with inductor's Python wrapper"
    )
    args = p.parse_args()
    if args.threads != torch.get_num_threads():  # as vae-train, which sets a count only when asked to:
        torch.set_num_threads(args.threads)  # the call also makes MKL's exp/log/sqrt use every thread
    allocator.keep_freed_memory_for_reuse()  # vae-train's malloc settings
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    extra_head = (
        " compiled bf16, Python wrapper, ms/step | C++ wrapper × Python wrapper |" if args.python_wrapper_too else ""
    )
    lines = [
        "| model | eager ms/step | compiled fp32 ms/step | × eager | compiled bf16 ms/step | × eager | "
        "bf16 compile, s | pays back after (epochs of 60k images) |" + extra_head,
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if args.python_wrapper_too else ""),
    ]
    eager_precision = None
    for row, (overrides, short) in ROWS.items():
        if args.models and short not in args.models:
            continue
        refused = refused_reason(list(overrides))
        if refused:
            lines.append(
                f"| {row} | refused under compile: {refused} | | | | | | |"
                + (" | |" if args.python_wrapper_too else "")
            )
            print(f"  {row}: refused ({refused})", file=sys.stderr, flush=True)
            continue
        got = time_row(list(overrides), args.blocks, args.steps, args.python_wrapper_too)
        eager, fp32, bf16 = got["eager"]["ms"], got["compiled fp32"]["ms"], got["compiled bf16"]["ms"]
        compile_s = got["compiled bf16"]["first_s"] - WARM_STEPS * bf16 / 1e3
        saved_per_epoch = (eager - bf16) / 1e3 * STEPS_PER_EPOCH
        payback = f"{compile_s / saved_per_epoch:.1f}" if saved_per_epoch > 0 else "never"
        lines.append(
            f"| {row} | {eager:.2f} | {fp32:.2f} | {eager / fp32:.2f}× | {bf16:.2f} | {eager / bf16:.2f}× | "
            f"{compile_s:.1f} | {payback} |"
        )
        if args.python_wrapper_too:
            python = got[PYTHON_WRAPPER]["ms"]
            lines[-1] += f" {python:.2f} | {python / bf16:.2f}× |"
        print(f"  {lines[-1]}", file=sys.stderr, flush=True)
        eager_precision = "bf16" if got["eager"]["bf16"] else "fp32"
    finished = time.strftime("%H:%M UTC", time.gmtime())
    print(
        f"### torch.compile per model (MLP 784-400-20, batch 128, one process, {args.blocks} alternating blocks of "
        f"{args.steps} steps)\n\nTaken {started}–{finished}, torch {torch.__version__}, {args.threads} threads; the "
        f"eager step in {eager_precision or '?'} (trainer.precision=auto).\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
