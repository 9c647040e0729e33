"""The ground truth of a run's ``dataset`` config, for the disentanglement metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vae_cli.config import DatasetConfig
from vae_cli.errors import DataError
from vae_cli.factors.ground_truth import FactorData

FACTOR_DATASETS = ("shapes2d", "xyobject", "dsprites")


def ground_truth_for(cfg: DatasetConfig) -> FactorData:
    name = cfg.name
    if name == "shapes2d":
        from vae_cli.factors.shapes2d import Shapes2D

        return Shapes2D()
    if name == "xyobject":
        from vae_cli.factors.xyobject import XYObject

        return XYObject()
    if name == "dsprites":
        from vae_cli.factors.dsprites import load_dsprites

        return load_dsprites(Path(cfg.root).expanduser(), cfg.download)
    if name == "image_folder" and cfg.factors_csv:
        return folder_with_factors(cfg)
    raise DataError(
        f"dataset '{name}' has no ground-truth factors, so disentanglement cannot be measured on it. Use a factor "
        f"dataset ({', '.join(FACTOR_DATASETS)}), or an image folder with a factors CSV "
        f"(dataset=image_folder dataset.factors_csv=factors.csv, see docs/disentanglement.md)."
    )


def folder_with_factors(cfg: DatasetConfig) -> FactorData:
    """The images listed in the factors CSV, decoded as the run decodes the folder, with their factors."""
    from vae_cli.datasets.decode import decode_files
    from vae_cli.datasets.image_folder import decode_spec
    from vae_cli.factors.table import FactorTable, read_factors_csv

    root = Path(cfg.root).expanduser()
    csv_path = Path(cfg.factors_csv).expanduser()
    if not csv_path.is_absolute() and not csv_path.is_file():
        csv_path = root / csv_path  # a relative path names a file in the folder itself
    if not csv_path.is_file():
        raise DataError(
            f"dataset.factors_csv={cfg.factors_csv} is neither a file nor a file in dataset.root ({root}); give the "
            f"path of the CSV that lists each image's factors."
        )
    files, factors, names, values = read_factors_csv(csv_path)
    paths = [root / f for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) the factors CSV {csv_path} lists do not exist, e.g. {missing[0]}. File paths "
            f"in the CSV are relative to dataset.root ({root})."
        )
    images = np.zeros((len(paths), cfg.channels, cfg.image_size, cfg.image_size), dtype=np.uint8)
    decode_files(paths, decode_spec(cfg), images, cfg.num_workers, skip_bad=False, root=root)
    return FactorTable(images, factors, names, values)
