"""A CVAE's condition (the one-hot label) joined to a flat representation."""

from __future__ import annotations

import torch


def join(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """``h`` with the condition ``c`` concatenated on the last axis (``h`` itself for an unconditional model)."""
    return h if c is None else torch.cat([h, c.to(h.dtype)], dim=-1)
