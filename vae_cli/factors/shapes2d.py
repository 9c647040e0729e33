"""``dataset=shapes2d``: dSprites' factor grid, rendered with numpy (no download).

Factors (dSprites' grid, without its constant colour): shape {square, ellipse, heart}, scale linspace(0.5, 1, 6),
orientation linspace(0, 2π, 40), x and y linspace(0, 1, 32): 737,280 binary 64x64 images. As in dSprites, the
orientation grid holds both 0 and 2π (the same picture), the square repeats every π/2 and the ellipse every π.

Rendering is exact and deterministic: a pixel is on when its centre lies inside the shape (no anti-aliasing, the
images are binary like dSprites'). The shape's centre moves over [0.2, 0.8] of the image in x and y (the largest
shape at any angle stays inside), x to the right and y downwards; orientation turns the shape anticlockwise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vae_cli.factors.ground_truth import FactorGrid

SHAPES = ("square", "ellipse", "heart")
NAMES = ("shape", "scale", "orientation", "x", "y")
SIZES = (3, 6, 40, 32, 32)
VALUES = (
    np.arange(3, dtype=np.float64),
    np.linspace(0.5, 1.0, 6),
    np.linspace(0.0, 2 * math.pi, 40),
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
)
IMAGE_SIZE = 64
# Radius of a scale-1 shape and the range of its centre, as fractions of the image side.
RADIUS = 0.16
CENTRE_LOW, CENTRE_SPAN = 0.2, 0.6


# Each shape is evaluated only on a window around its centre: the largest one reaches 1.14 radii (11.7 px) from it.
WINDOW = 28
# Images rendered per numpy call: bounds the float32 temporaries (a few of [chunk, 28, 28]).
CHUNK = 8192


def square(lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(lx), np.abs(ly)) <= 0.8


def ellipse(lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    return lx**2 + (ly / 0.5) ** 2 <= 1.0


def heart(lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    # The heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, spanning y in [-1, 1.25]: shrunk and shifted into the unit disc.
    hx, hy = lx / 0.85, ly / 0.85 + 0.12
    return (hx**2 + hy**2 - 1.0) ** 3 - hx**2 * hy**3 <= 0.0


INSIDE = (square, ellipse, heart)  # in the order of SHAPES: shape-local points (units of the radius, y up)


def render(shape: np.ndarray, scale: np.ndarray, orientation: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """uint8 images ``[n, 1, 64, 64]`` (0 or 255) of the given real factor values (shape as 0/1/2)."""
    shape = np.asarray(shape).astype(np.int64)
    n = len(shape)
    out = np.zeros((n, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    ramp = np.arange(WINDOW, dtype=np.int64)
    for kind, is_inside in enumerate(INSIDE):
        rows = np.flatnonzero(shape == kind)
        for start in range(0, len(rows), CHUNK):
            idx = rows[start : start + CHUNK]

            def col(v: np.ndarray, idx: np.ndarray = idx) -> np.ndarray:
                return np.asarray(v, dtype=np.float64)[idx].astype(np.float32)[:, None, None]

            cx, cy = CENTRE_LOW + CENTRE_SPAN * col(x), CENTRE_LOW + CENTRE_SPAN * col(y)
            # The window's first pixel, so the centre sits in its middle (and the window inside the image).
            ox = np.clip(np.floor(cx * IMAGE_SIZE).astype(np.int64) - WINDOW // 2, 0, IMAGE_SIZE - WINDOW)
            oy = np.clip(np.floor(cy * IMAGE_SIZE).astype(np.int64) - WINDOW // 2, 0, IMAGE_SIZE - WINDOW)
            px = (ox + ramp[None, None, :]).astype(np.float32)  # pixel columns [n, 1, W]
            py = (oy + ramp[None, :, None]).astype(np.float32)  # pixel rows [n, W, 1]
            radius = RADIUS * col(scale)
            dx = ((px + 0.5) / IMAGE_SIZE - cx) / radius
            dy = (cy - (py + 0.5) / IMAGE_SIZE) / radius  # y up in shape coordinates
            cos, sin = np.cos(col(orientation)), np.sin(col(orientation))
            # Turning the shape anticlockwise by theta = turning the points clockwise by theta.
            on = is_inside(cos * dx + sin * dy, cos * dy - sin * dx)
            out[idx[:, None, None], 0, py.astype(np.int64), px.astype(np.int64)] = on.astype(np.uint8) * np.uint8(255)
    return out


class Shapes2D(FactorGrid):
    """The whole grid, rendered on demand."""

    def __init__(self) -> None:
        super().__init__(NAMES, SIZES, VALUES)

    def observations(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        f = np.asarray(factors, dtype=np.int64)
        return render(*(self.factor_values(k)[f[:, k]] for k in range(self.num_factors)))


def from_config(cfg: Any) -> Shapes2D:
    """The ground truth of ``dataset=shapes2d`` (the dataset catalog's ``ground_truth``): the whole grid."""
    return Shapes2D()
