"""``dataset.download=true``: fetch the official files through torchvision's own dataset classes.

Only the download is torchvision's; the files are then read by this package's readers like any files placed
by hand, so online and offline runs take the same path afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vae_cli.process.errors import DataError

log = logging.getLogger(__name__)


def torchvision_download(name: str, class_name: str, root: Path, **kwargs: Any) -> None:
    """Let ``torchvision.datasets.<class_name>(root, download=True, **kwargs)`` fetch and check the files."""
    import torchvision.datasets as tvd

    log.info("downloading %s through torchvision into %s", name, root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        getattr(tvd, class_name)(str(root), download=True, **kwargs)
    except ImportError:
        # The files are downloaded before torchvision imports its optional reader (scipy for SVHN); the files
        # are all this tool needs, and it reads them itself.
        pass
    except Exception as exc:
        raise DataError(
            f"Downloading '{name}' through torchvision into {root} failed ({type(exc).__name__}: {exc}). Check the "
            f"internet connection, or download the files by hand into the layout of docs/datasets.md and run "
            f"with dataset.download=false."
        ) from exc
