"""Ground truth from a table: images with the factor values of each, not necessarily a full grid.

An image folder with a factors CSV is one (``dataset=image_folder dataset.factors_csv=factors.csv``): the CSV
has a ``file`` column (paths relative to dataset.root) and one column per factor; each factor's distinct values,
sorted, become its levels 0 .. size-1. Only listed combinations exist, so holding a factor fixed draws among the
images that have its value.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from vae_cli.factors.ground_truth import FactorData
from vae_cli.process.errors import DataError


class FactorTable(FactorData):
    def __init__(self, images: np.ndarray, factors: np.ndarray, names: tuple[str, ...], values=None) -> None:
        if len(images) != len(factors) or len(images) == 0:
            raise ValueError("one factor row per image, and at least one image")
        self.images = images
        self.factors = np.asarray(factors, dtype=np.int64)
        self.factor_names = tuple(names)
        self.factor_sizes = tuple(int(s) for s in self.factors.max(axis=0) + 1)
        self._values = values
        # Factor values -> the first row that has them (what observations() looks up).
        self._first_row = {tuple(row): i for i, row in reversed(list(enumerate(self.factors.tolist())))}
        # For each factor and level: the rows that have it (what holding that factor fixed draws from).
        self._rows = [
            [np.flatnonzero(self.factors[:, k] == level) for level in range(size)]
            for k, size in enumerate(self.factor_sizes)
        ]

    def factor_values(self, k: int) -> np.ndarray:
        return np.asarray(self._values[k]) if self._values is not None else super().factor_values(k)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.factors[rng.integers(0, len(self.factors), n)]

    def _rows_of(self, factors: np.ndarray) -> np.ndarray:
        """A row with exactly these factor values, for each (the first listed one)."""
        try:
            return np.array([self._first_row[tuple(row)] for row in np.asarray(factors).tolist()], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"no image has the factor values {exc.args[0]}") from None

    def observations(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.images[self._rows_of(factors)])

    def sharing(self, factors: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty_like(np.asarray(factors, dtype=np.int64))
        for i, level in enumerate(np.asarray(factors)[:, k].tolist()):
            rows = self._rows[k][level]
            out[i] = self.factors[rows[rng.integers(0, len(rows))]]
        return out


def read_factors_csv(path: Path) -> tuple[list[str], np.ndarray, tuple[str, ...], list[np.ndarray]]:
    """(files, factor levels [N, F], factor names, each factor's sorted distinct values) of a factors CSV, checked
    whole before any image is decoded: a byte-order mark is allowed; rows with more or fewer fields than the header,
    duplicated column names, a file listed twice (whatever its values), empty or ``nan`` values, a factor with one
    level only (no metric can say anything about it), and file paths that leave the folder are refused by name."""
    problems: list[str] = []
    try:
        # utf-8-sig: a CSV saved by a spreadsheet starts with a byte-order mark, which is not part of 'file'.
        with path.open(newline="", encoding="utf-8-sig") as f:
            table = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"Could not read the factors CSV {path}: {exc}. Fix the file or dataset.factors_csv.") from exc
    header = [h.strip() for h in table[0]] if table else []
    body = [row for row in table[1:] if any(cell.strip() for cell in row)]
    if "file" not in header or len(header) < 2 or not body:
        raise DataError(
            f"The factors CSV {path} needs a 'file' column, at least one factor column and one row (e.g. "
            f"'file,shape,size'); it has {header or 'nothing'}{'' if body else ' and no rows'}."
        )
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        problems.append(f"its columns {twice} appear more than once")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            problems.append(f"row {line} has {len(row)} fields where the header has {len(header)}")
            break
    if problems:
        raise DataError(f"The factors CSV {path} cannot be used: " + "; ".join(problems) + ". Fix the file.")
    rows = [dict(zip(header, (cell.strip() for cell in row), strict=True)) for row in body]
    files = [r["file"] for r in rows]
    seen: dict[str, int] = {}
    for line, name in enumerate(files, start=2):
        if name in seen:
            problems.append(f"'{name}' is listed twice (rows {seen[name]} and {line})")
            break
        seen[name] = line
    outside = [f for f in files if Path(f).is_absolute() or ".." in Path(f).parts]
    if outside:
        problems.append(
            f"file paths must stay inside dataset.root, and {outside[0]!r} does not (no absolute paths, no '..')"
        )
    names = tuple(h for h in header if h != "file")
    levels, values = [], []
    for name in names:
        column = [r[name] for r in rows]
        if any(v == "" or v.lower() == "nan" for v in column):
            problems.append(f"'{name}' is empty or nan in some rows; every row needs a value")
            continue
        try:
            numeric = np.array([float(v) for v in column])
            distinct = np.unique(numeric)
            levels.append(np.searchsorted(distinct, numeric))
        except ValueError:  # text levels (e.g. colour names): in sorted order
            distinct = np.array(sorted(set(column)))
            levels.append(np.searchsorted(distinct, np.array(column)))
        if len(distinct) < 2:
            problems.append(f"'{name}' has one value only ({column[0]}): a factor must vary")
        values.append(distinct)
    if problems:
        raise DataError(f"The factors CSV {path} cannot be used: " + "; ".join(problems) + ". Fix the file.")
    return files, np.stack(levels, axis=1).astype(np.int64), names, values
