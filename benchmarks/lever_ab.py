"""One speed lever of the objectives on and off, in one process: the training step of a peer-table row both ways.

    python benchmarks/lever_ab.py --lever shared_discriminator --models factor_vae aae
    python benchmarks/lever_ab.py --lever mmd_backward --models info_vae wae

Levers (each "off" is the computation it replaced, still reachable in the product or kept here as the reference):

- ``shared_discriminator``: an MLP discriminator's frozen and trained passes from one forward
  (``objectives/mlp_passes.py``); off, the two passes (``DiscriminatorPasses.frozen`` and ``.trained``, what the
  product does for a discriminator that is not an MLP).
- ``mmd_backward``: the MMD from one kernel matrix with a closed-form backward (``objectives/mmd.py``); off, autograd
  through the three kernel matrices (``pairwise_terms.autograd_mmd``).

Why in one process: this machine's speed moves by up to 50% within minutes, so a 10% change of a step shows only
side by side. The row's step is built once (``vae-train``'s builders and ``TrainStep``, ``posterior_ab.build_step``,
the row's overrides from ``peers.py``, the run's default precision), then blocks of steps with the lever on and off
alternate (on off off on ...). Prints each mode's median ms per step and the ratio with the spread of the pairs.
For the vMF posterior's sampler use ``posterior_ab.py`` (its class at another commit, at a trained run's weights).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairwise_terms import autograd_mmd
from peers import ROWS, SHORT
from posterior_ab import alternate_blocks, build_step, middle_half

import vae_cli.objectives.adversarial as adversarial
import vae_cli.objectives.info_vae as info_vae
import vae_cli.objectives.wae as wae
from vae_cli.process import allocator


def shared_discriminator(on: bool) -> None:
    adversarial.mlp_layers = LEVER_ON["mlp_layers"] if on else (lambda module: None)


def mmd_backward(on: bool) -> None:
    def autograd_version(z, p, kernel, scales):
        return autograd_mmd(z, p, scales.tolist() if isinstance(scales, torch.Tensor) else scales)

    version = LEVER_ON["mmd_unbiased"] if on else autograd_version
    info_vae.mmd_unbiased = wae.mmd_unbiased = version


LEVER_ON = {"mlp_layers": adversarial.mlp_layers, "mmd_unbiased": info_vae.mmd_unbiased}
LEVERS: dict[str, Callable[[bool], None]] = {
    "shared_discriminator": shared_discriminator,
    "mmd_backward": mmd_backward,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lever", required=True, choices=sorted(LEVERS))
    p.add_argument("--models", nargs="+", required=True, choices=sorted(SHORT.values()))
    p.add_argument("--blocks", type=int, default=10, help="blocks per mode (alternating)")
    p.add_argument("--steps", type=int, default=30, help="steps per block")
    args = p.parse_args()
    allocator.keep_freed_memory_for_reuse()  # vae-train's malloc settings
    overrides = {short: row_overrides for row_overrides, short in ROWS.values()}
    switch = LEVERS[args.lever]
    x = (torch.rand(128, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    y = torch.zeros(128, dtype=torch.long)
    for name in args.models:
        _, step = build_step(list(overrides[name]))
        times = alternate_blocks(
            step, x, y, lambda mode: switch(mode == "on"), ("on", "off"), args.blocks, args.steps, warmup=15, settle=3
        )
        off, on_ms = statistics.median(times["off"]), statistics.median(times["on"])
        low, high = middle_half(times["off"], times["on"])
        print(
            f"{name} ({' '.join(overrides[name])}), step {'bf16' if step.bf16 else 'fp32'}, {args.lever}: "
            f"off {off:.2f} ms, on {on_ms:.2f} ms, off/on {off / on_ms:.3f}x "
            f"(pairs, middle half: {low:.2f}-{high:.2f}x), "
            f"{args.blocks} blocks x {args.steps} steps each",
            flush=True,
        )
        switch(True)


if __name__ == "__main__":
    sys.exit(main())
