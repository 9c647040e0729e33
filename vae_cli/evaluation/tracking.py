"""TensorBoard logging: scalars, image grids (also saved as PNG), and hparams with the final metrics.

One event stream per run directory. ``SummaryWriter.add_hparams`` would open a separate sub-run, so the hparams
summary is written into the main writer instead. On resume, ``purge_step`` drops whatever the interrupted run
logged after its checkpoint, so curves have no duplicated steps.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import torch

from vae_cli.evaluation.plots import labelled_grid, to_tensor
from vae_cli.evaluation.trackers.base import Guarded
from vae_cli.process.atomic import atomic_write


class WriterErrors:
    """OSErrors of TensorBoard's background writer thread (a full disk), which it would otherwise print as a
    thread traceback and drop: collected here and raised by ``Tracker.flush``/``close``."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self._previous = threading.excepthook

    def __call__(self, args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError):
            self.errors.append(args.exc_value)
        else:
            self._previous(args)


class Tracker:
    """TensorBoard (and the PNG files) for one run, and the external trackers it fans out to (``extra``: MLflow,
    W&B, opened by ``trackers.opened.open_trackers``): scalars and pictures go to all of them."""

    def __init__(
        self,
        run_dir: Path,
        enabled: bool = True,
        save_png: bool = True,
        purge_step: int | None = None,
        extra: list[Guarded] | None = None,
    ):
        self.run_dir = run_dir
        self.save_png = save_png
        self.extra = list(extra or [])
        self.writer = None
        self.writer_errors = WriterErrors()
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            threading.excepthook = self.writer_errors
            self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tracker in self.extra:
            tracker.scalars(values, step)
        if self.writer is None:
            return
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def images(
        self,
        tag: str,
        images: torch.Tensor,
        step: int,
        epoch: int,
        nrow: int | None = None,
        title: str | None = None,
        row_labels: list[str] | None = None,
        col_labels: list[str] | None = None,
    ) -> None:
        """Log a grid of images in [0, 1], ``[N, C, H, W]``, labelled and scaled to readable tiles
        (``plots.labelled_grid``); also write it as a PNG."""
        images = images.detach().float().clamp(0, 1).cpu()
        nrow = nrow or max(1, round(images.shape[0] ** 0.5))
        picture = labelled_grid(images, nrow, title, row_labels, col_labels)
        for tracker in self.extra:
            tracker.image(tag, picture, step)
        if self.writer is not None:
            self.writer.add_image(tag, to_tensor(picture), step)
        if self.save_png:
            out = self.run_dir / "images" / f"{tag.replace('/', '_')}_epoch{epoch:03d}.png"
            with atomic_write(out, durable=False) as f:
                picture.save(f, format="png")

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """Write the hparams-plugin summary into this run (not a sub-run): the session's values, without an
        experiment summary. TensorBoard takes the HPARAMS columns from the first experiment summary it finds,
        one run's; without any, it makes them from every run's values, so a log dir holding many runs and sweeps
        keeps each one's swept keys as columns. The metrics are the scalars the runs log (``val/loss``, ...)."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        _experiment, ssi, sei = hparams_summary(clean, metrics)
        fw = self.writer._get_file_writer()
        fw.add_summary(ssi)
        fw.add_summary(sei)

    def loss_layout(self, terms: list[str]) -> None:
        """TensorBoard's CUSTOM SCALARS view of the run: one chart per term of the objective with its train and
        val curves together (the loss first), then the bounds on held-out data."""
        if self.writer is None:
            return
        charts = {
            term: ["Multiline", [f"^train/{re.escape(term)}$", f"^val/{re.escape(term)}$"]]
            for term in ["loss", *(t for t in terms if t != "loss")]
        }
        held_out = {
            "-log p(x), IW estimate": ["Multiline", ["^val/nll_iw$", "^test/nll_iw$", "^eval/.*/nll_iw$"]],
            "learning rate": ["Multiline", ["^train/lr$"]],
        }
        self.writer.add_custom_scalars({"1. train and val": charts, "2. held-out bounds and schedule": held_out})

    def finish_trackers(self, status: str, files: list[Path]) -> None:
        """End the external trackers' runs: ``status`` finished | failed | interrupted, ``files`` kept with them."""
        extra, self.extra = self.extra, []
        for tracker in extra:
            tracker.finish(status, files)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self._raise_writer_errors()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            threading.excepthook = self.writer_errors._previous
            self._raise_writer_errors()

    @property
    def event_file(self) -> Path | None:
        try:
            return Path(self.writer.file_writer.event_writer._file_name)  # type: ignore[union-attr]
        except AttributeError:
            return None

    def _raise_writer_errors(self) -> None:
        if self.writer_errors.errors:
            raise self.writer_errors.errors[0]

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        if self.writer is not None:
            self.writer.add_histogram(tag, values.detach().float().flatten().cpu(), step)

    def embedding(
        self, features: torch.Tensor, labels: list[str], thumbnails: torch.Tensor, step: int, tag: str
    ) -> None:
        """The embedding projector: points, label metadata and image thumbnails. ``add_embedding`` writes them
        into ``<run dir>/<step>/<tag>/`` and ``projector_config.pbtxt`` into the run dir (no extra event run)."""
        if self.writer is not None:
            self.writer.add_embedding(
                features.detach().float().cpu(),
                metadata=labels,
                label_img=thumbnails.detach().float().cpu(),
                global_step=step,
                tag=tag,
            )
