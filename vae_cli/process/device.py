"""Which torch device a run uses: ``trainer.device`` (auto | cpu | cuda | mps) or ``--device`` of the tools."""

from __future__ import annotations

import torch

from vae_cli.process.errors import ConfigError


def pick_device(name: str) -> torch.device:
    """The device ``name`` asks for (``auto``: CUDA, then MPS, then the CPU); a ConfigError naming the fix when
    torch does not see it."""
    name = str(getattr(name, "value", name))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.device=cuda but no CUDA GPU is visible to torch "
            f"(torch {torch.__version__}). Use trainer.device=auto or cpu, or install a CUDA build of torch."
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("trainer.device=mps but the Apple MPS backend is not available; use auto or cpu.")
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"trainer.device must be auto, cpu, cuda or mps (got {name!r}).")
    return torch.device(name)
