"""Argument types shared by the tools' command lines (vae-eval, vae-sample, vae-compare): each refuses a bad
value with argparse's usage message and exit 2, naming the value."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole_number(text: str, least: int, most: int | None = None, most_text: str = "") -> int:
    """``text`` as a whole number in [least, most]; ``most_text`` ends the message for one above ``most``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
    if most is not None and value > most:
        raise argparse.ArgumentTypeError(f"{most_text or f'must be at most {most}'}, got {value}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def at_most(most: int, why: str) -> Callable[[str], int]:
    """A positive whole number up to ``most``; ``why`` ends the message for a larger one."""
    return lambda text: whole_number(text, 1, most, f"must be at most {most} ({why})")


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def seed(text: str) -> int:
    """A seed as trainer.seed takes it: a whole number in [0, 2**62) (torch takes 64 bits; offsets are added)."""
    from vae_cli.config.training import MAX_SEED

    try:
        return whole_number(text, 0, MAX_SEED - 1)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a whole number in [0, 2**62), got {text}") from None
