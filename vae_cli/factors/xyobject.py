"""``dataset=xyobject``: one coloured square on black (disent's XYObject): the colour-model factor set.

Factors: x and y (16 positions each), scale (4 sizes: 8, 12, 16, 20 px) and colour (6 saturated hues: red,
yellow, green, cyan, blue, magenta): 6,144 RGB 64x64 images. The square's top-left corner moves over the
positions its largest size allows, so position and scale never interact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vae_cli.factors.ground_truth import FactorGrid

IMAGE_SIZE = 64
SIDES = (8, 12, 16, 20)
COLOURS = ("red", "yellow", "green", "cyan", "blue", "magenta")
RGB = np.array([[255, 0, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255], [0, 0, 255], [255, 0, 255]], dtype=np.uint8)
POSITIONS = 16
NAMES = ("x", "y", "scale", "colour")
SIZES = (POSITIONS, POSITIONS, len(SIDES), len(COLOURS))


class XYObject(FactorGrid):
    def __init__(self) -> None:
        corners = np.linspace(0, IMAGE_SIZE - max(SIDES), POSITIONS).round()
        super().__init__(NAMES, SIZES, (corners, corners, np.array(SIDES, dtype=np.float64), np.arange(6.0)))

    def observations(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        f = np.asarray(factors, dtype=np.int64)
        n = len(f)
        left = self.factor_values(0)[f[:, 0]].astype(np.int64)
        top = self.factor_values(1)[f[:, 1]].astype(np.int64)
        side = self.factor_values(2)[f[:, 2]].astype(np.int64)
        grid = np.arange(IMAGE_SIZE)
        cols = (grid[None, :] >= left[:, None]) & (grid[None, :] < (left + side)[:, None])  # [n, W]
        rows = (grid[None, :] >= top[:, None]) & (grid[None, :] < (top + side)[:, None])  # [n, H]
        mask = rows[:, :, None] & cols[:, None, :]  # [n, H, W]
        out = mask[:, None, :, :].astype(np.uint8) * RGB[f[:, 3]][:, :, None, None]
        return out.reshape(n, 3, IMAGE_SIZE, IMAGE_SIZE)


def from_config(cfg: Any) -> XYObject:
    """The ground truth of ``dataset=xyobject`` (the dataset catalog's ``ground_truth``): the whole grid."""
    return XYObject()
