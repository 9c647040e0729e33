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


def native_bf16(device: torch.device) -> str | None:
    """Why ``device`` runs bf16 matmuls natively (several times its fp32 rate), or None where it does not: CUDA GPUs
    with bf16 support, CPUs with AMX or AVX512-BF16 (where oneDNN has bf16 GEMM kernels). Elsewhere bf16 is
    emulated and slower than fp32."""
    if device.type == "cuda":
        return "a CUDA GPU with bf16 support" if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        if torch.cpu._is_amx_tile_supported():
            return "this CPU has AMX bf16 matmuls"
        if torch.cpu._is_avx512_bf16_supported():
            return "this CPU has AVX512-BF16 matmuls"
    return None
