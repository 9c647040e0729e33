"""Forward + backward time of the conv models' layer shapes in fp32 / bf16, NCHW / NHWC, on this CPU.

    python benchmarks/conv_precision.py

Why it exists: vae-cli used to keep convolutions in fp32 under bf16 autocast on CPU, because oneDNN's bf16
convolution backward fell back to a reference kernel (~200x slower). This shows whether that still holds for the
installed torch (README "What makes the step fast" has the figures for torch 2.14).
"""

from __future__ import annotations

import time

import torch
from torch import nn

SHAPES = [
    (nn.Conv2d(1, 32, 4, 2, 1), (128, 1, 28, 28)),
    (nn.Conv2d(32, 64, 4, 2, 1), (128, 32, 14, 14)),
    (nn.ConvTranspose2d(64, 32, 4, 2, 1), (128, 64, 7, 7)),
    (nn.Conv2d(64, 64, 3, 1, 1), (128, 64, 14, 14)),
]


def step_ms(layer: nn.Module, shape: tuple[int, ...], bf16: bool, nhwc: bool, seconds: float = 0.6) -> float:
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    x = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_()
    layer = layer.to(memory_format=fmt)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = layer(x)
        y.float().sum().backward()

    for _ in range(3):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: forward + backward, ms")
    print("| layer | input | fp32 NCHW | bf16 NCHW | fp32 NHWC | bf16 NHWC |\n|---|---|---|---|---|---|")
    for layer, shape in SHAPES:
        cells = [step_ms(layer, shape, bf16, nhwc) for nhwc in (False, True) for bf16 in (False, True)]
        print(f"| {layer} | {shape} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
