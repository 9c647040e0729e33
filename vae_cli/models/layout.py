"""Memory layout of a model's convolutions: NHWC (``channels_last``) where it is the faster layout.

oneDNN's CPU convolutions and cuDNN's tensor-core kernels are fastest in NHWC. Training converts a convolutional
model when it runs in bf16 on a CPU or on CUDA (``trainer.channels_last``, ``training/step.py``); evaluation
(vae-eval's importance-weighted bound, vae-sample, sample quality) converts the model it loads, in fp32 too:
there NHWC was 1.4x (fmnist_hvae) and 1.6x (fmnist_resnet) faster than NCHW over the same IW-10 estimate in one
process on this project's 2-core CPU, with the same numbers to fp32 rounding (``benchmarks/eval_paths.py`` times
the commands). Inputs follow the model's layout (``input_layout``): a convolution given an NCHW input and NHWC
weights reorders the input first, and an elementwise op given one of each is several times slower.
"""

from __future__ import annotations

import torch
from torch import nn

CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, CONVOLUTIONS) for m in model.modules())


def to_channels_last(model: nn.Module) -> bool:
    """Convert a convolutional model's parameters to NHWC in place (the same Parameter objects); returns whether it
    did (a model without convolutions is left as it is)."""
    if not has_convolutions(model):
        return False
    model.to(memory_format=torch.channels_last)
    return True


def layout_of(t: torch.Tensor) -> torch.memory_format:
    """NHWC for a 4-D tensor that is channels-last and not also NCHW-contiguous, else NCHW. (A map with one channel,
    or 1 x 1 pixels, is both at once: it says nothing, and counts as NCHW.)"""
    nhwc = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    return torch.channels_last if nhwc else torch.contiguous_format


def input_layout(model: nn.Module) -> torch.memory_format:
    """The layout to give the model's image inputs: NHWC when its convolutions' weights are NHWC. (A weight with
    one input channel, as the first layer on grayscale images has, is both at once: the first one that is not
    decides.)"""
    for module in model.modules():
        if isinstance(module, CONVOLUTIONS):
            weight = module.weight
            if weight.is_contiguous() != weight.is_contiguous(memory_format=torch.channels_last):
                return layout_of(weight)
    return torch.contiguous_format
