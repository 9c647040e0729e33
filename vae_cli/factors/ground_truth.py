"""The ground-truth interface the disentanglement metrics need, and the two ways a dataset provides it.

A factor is discrete: its values are numbered ``0 .. size-1`` (``values[k]`` maps them to real values, e.g. the
scale 0.5 ... 1). Observations are uint8 images ``[N, C, H, W]``.

- :class:`FactorGrid`: every combination of the factors exists (dSprites, shapes2d, xyobject), so factors can be
  drawn independently and any one can be held fixed while the others are drawn anew.
- :class:`~vae_cli.factors.table.FactorTable`: only the listed rows exist (an image folder with a factors CSV);
  holding a factor fixed draws among the rows that have its value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class FactorData(ABC):
    """Observations whose generative factors are known."""

    #: one name per factor, e.g. ("shape", "scale", "orientation", "x", "y")
    factor_names: tuple[str, ...]
    #: how many values each factor takes
    factor_sizes: tuple[int, ...]

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @abstractmethod
    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``[n, num_factors]`` int64 factor values of ``n`` observations drawn from the data."""

    @abstractmethod
    def observations(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The uint8 images ``[n, C, H, W]`` of these factor values (one of them, where several share them)."""

    @abstractmethod
    def sharing(self, factors: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """For each row of ``factors``, the factors of another observation drawn with factor ``k`` held at that
        row's value (the other factors drawn anew)."""

    def sample_with_fixed(self, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
        """Factors of ``n`` observations that all share one (random) value of factor ``k``."""
        anchor = self.sample_factors(1, rng)
        return self.sharing(np.repeat(anchor, n, axis=0), k, rng)

    def factor_values(self, k: int) -> np.ndarray:
        """The real value of each level of factor ``k`` (levels themselves unless a dataset says otherwise)."""
        return np.arange(self.factor_sizes[k], dtype=np.float64)


class FactorGrid(FactorData):
    """A full grid: every combination of factor values is one observation (rendered or looked up)."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int], values: Sequence[np.ndarray] | None = None):
        if len(names) != len(sizes):
            raise ValueError("one name per factor")
        self.factor_names = tuple(names)
        self.factor_sizes = tuple(int(s) for s in sizes)
        self._values = [np.asarray(v, dtype=np.float64) for v in values] if values is not None else None
        # Row-major strides: grid index of factors f = f @ strides (dSprites' own file order).
        self.strides = np.cumprod((1, *self.factor_sizes[::-1]))[:-1][::-1].astype(np.int64)

    @property
    def size(self) -> int:
        return int(np.prod(self.factor_sizes))

    def factor_values(self, k: int) -> np.ndarray:
        return self._values[k] if self._values is not None else super().factor_values(k)

    def index_of(self, factors: np.ndarray) -> np.ndarray:
        """The row-major grid index of each row of factors."""
        return np.asarray(factors, dtype=np.int64) @ self.strides

    def factors_of(self, index: np.ndarray) -> np.ndarray:
        """The factors of grid indices (inverse of :meth:`index_of`)."""
        index = np.asarray(index, dtype=np.int64)
        return np.stack([(index // s) % n for s, n in zip(self.strides, self.factor_sizes, strict=True)], axis=1)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, size, n) for size in self.factor_sizes], axis=1).astype(np.int64)

    def sharing(self, factors: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        fresh = self.sample_factors(len(factors), rng)
        fresh[:, k] = factors[:, k]
        return fresh


class ImageGrid(FactorGrid):
    """A full grid stored as an image array in grid order (the dSprites file; small rendered grids)."""

    def __init__(self, images: np.ndarray, names: Sequence[str], sizes: Sequence[int], values=None):
        super().__init__(names, sizes, values)
        if images.shape[0] != self.size:
            raise ValueError(f"{images.shape[0]} images for a grid of {self.size}")
        self.images = images

    def observations(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.images[self.index_of(factors)])
