"""What TensorBoard shows about the latent space while a model trains.

Every ``latent_every_epochs`` epochs (thinned for runs of many short epochs, see ``logger.max_image_logs``) and
after the last: histograms of mu and log sigma^2 over a fixed probe set of validation images, latent traversals
(dimensions sorted by KL, or by the variance of mu for priors without a per-dimension KL) and the 2-D scatter of mu
coloured by class (PCA when latent_dim > 2). Every ``nll_iw_every_epochs`` epochs (and after the
last): ``val/nll_iw``, the importance-weighted -log p(x) with a small K on the validation split. At the end of training:
the embedding projector (mu with label metadata and thumbnails).

Nothing here draws from the global RNG (the IW noise has its own seeded generator), so a resumed run stays
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import math

import torch

from vae_cli.config.training import TrainerConfig
from vae_cli.datasets.batches import batch_count, labelled_batches
from vae_cli.datasets.preprocess import to_unit_float
from vae_cli.datasets.splits import ImageSplits
from vae_cli.evaluation.bounds import default_batch_size, evaluate_images
from vae_cli.evaluation.latent_views import MeanDecoder, dims_by_usage, latent_scatter, traversal_latents
from vae_cli.evaluation.plots import to_tensor, value_label
from vae_cli.evaluation.tracking import Tracker
from vae_cli.models.likelihoods.base import Measures
from vae_cli.models.protocol import CodeGridModel, Model
from vae_cli.process import progress

log = logging.getLogger(__name__)

TRAVERSAL_VALUES = torch.linspace(-3, 3, 9)
TRAVERSAL_MAX_DIMS = 10
# The IW estimate, by default, costs about this fraction of the training between two estimates, on at least
# IW_LEAST_IMAGES images. One of its K samples per image costs up to one training image's forward and backward
# pass (measured from 0.1x for the MLP to 0.9x for the residual networks, whose K x B decodes come in large
# batches: python benchmarks/eval_budget.py), so an image costs K training images.
IW_BUDGET = 0.1
IW_LEAST_IMAGES = 128


# The projector's files are text (tensors.tsv: ~10 bytes a number): at most this many points, and a latent wider
# than EMBEDDING_MAX_DIMS (a hierarchy's maps: thousands of numbers per image) is shown by its leading principal
# components, which is what the projector's own PCA view shows anyway. About 5 MB at most.
EMBEDDING_MAX_POINTS = 5000
EMBEDDING_MAX_DIMS = 100


def projector_points(mu: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The points the projector gets, and their tag: ``mu`` itself, or its leading principal components."""
    mu = mu.float().cpu()
    if mu.shape[1] <= EMBEDDING_MAX_DIMS:
        return mu, "latent_mu"
    centred = mu - mu.mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    dims = min(EMBEDDING_MAX_DIMS, v.shape[0])
    return centred @ v[:dims].T, f"latent_mu_pca{dims}"


def iw_image_count(cfg: TrainerConfig, train_size: int, pool: int) -> int:
    """How many validation images ``val/nll_iw`` is estimated on: ``trainer.nll_iw_images``, or by default as
    many as cost about ``IW_BUDGET`` of the training between two estimates (1,719 of Fashion-MNIST's 5,000 for
    an estimate with K=16 every 5 epochs, 3,438 every 10; fewer for a small ``dataset.subset``). Fixed by the
    config, never by timing, so reruns and resumed runs estimate on the same images."""
    if cfg.nll_iw_images is not None:
        return min(cfg.nll_iw_images, pool)
    affordable = math.ceil(IW_BUDGET * train_size * max(1, cfg.nll_iw_every_epochs) / cfg.nll_iw_k)
    return min(pool, max(IW_LEAST_IMAGES, affordable))


class LatentMonitor:
    def __init__(
        self,
        model: Model,
        data: ImageSplits,
        cfg: TrainerConfig,
        tracker: Tracker,
        every: int | None = None,
        bound: bool = True,
    ):
        self.model = model
        self.cfg = cfg
        # Histograms, traversals and the scatter, every this many epochs (and after the last one).
        self.every = every or cfg.latent_every_epochs
        self.tracker = tracker
        has_val = data.val.shape[0] > 0
        images, labels = (data.val, data.val_labels) if has_val else (data.train, data.train_labels)
        n = min(cfg.latent_images, images.shape[0])
        device = next(model.parameters()).device
        # A fixed probe set (the first validation images), so pictures of different epochs compare. (A streamed
        # training split slices to a CPU tensor, hence the move.)
        self.images, self.labels = images[:n].to(device), labels[:n].to(device)
        self.class_names = tuple(getattr(data, "class_names", ()))
        # val/nll_iw: on the first iw_count validation images (all of them when the estimate is cheap enough).
        pool, pool_labels = (data.val, data.val_labels) if has_val else (self.images, self.labels)
        # A model without a likelihood bound (an autoencoder, a score reconstruction) gets no IW estimate.
        self.iw_count = iw_image_count(cfg, data.train.shape[0], pool.shape[0]) if bound else 0
        self.iw_pool = pool.shape[0]
        self.iw_images, self.iw_labels = pool[: self.iw_count], pool_labels[: self.iw_count]
        self.split = "val" if has_val else "train"
        self.epochs_seen = 0

    @torch.no_grad()
    def _encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        mus, logvars = [], []
        for x, y in labelled_batches(self.images, self.labels, self.cfg.eval_batch_size):
            mu, logvar = self.model.encode(x, y)
            mus.append(mu.float())
            logvars.append(logvar.float())
        return torch.cat(mus), torch.cat(logvars)

    def on_epoch_end(self, epoch: int, step: int, last: bool) -> dict[str, float]:
        """Log this epoch's latent views (``epoch`` counts from 1); returns scalars worth keeping in the history."""
        if self.images.shape[0] == 0:
            return {}
        self.epochs_seen += 1
        was_training = self.model.training
        self.model.eval()
        try:
            return self._log(epoch, step, last)
        finally:
            self.model.train(was_training)

    def _log(self, epoch: int, step: int, last: bool) -> dict[str, float]:
        pictures = epoch % self.every == 0 or last
        if pictures:
            mu, logvar = self._encode()
            if isinstance(self.model, CodeGridModel):  # a VQ-VAE: how often each code is used on the probe images
                with torch.no_grad():
                    batches = labelled_batches(self.images, self.labels, 500)
                    codes = torch.cat([self.model.codes(x) for x, _ in batches])
                self.tracker.histogram("latent/code_usage", codes.flatten().float(), step)
            self.tracker.histogram("latent/mu", mu, step)
            self.tracker.histogram("latent/logvar", logvar, step)
            dims = dims_by_usage(self.model, mu, logvar)[:TRAVERSAL_MAX_DIMS]
            decode = MeanDecoder(self.model)
            label = self.labels[:1].repeat(len(dims) * len(TRAVERSAL_VALUES))
            grid = decode(traversal_latents(mu[0], dims, TRAVERSAL_VALUES), label)
            self.tracker.images(
                "latent/traversals",
                grid,
                step,
                epoch,
                nrow=len(TRAVERSAL_VALUES),
                title=f"epoch {epoch}: one latent at a time, from the first image's mu (most used latents first)",
                row_labels=[f"z[{int(d)}]" for d in dims],
                col_labels=[value_label(v) for v in TRAVERSAL_VALUES.tolist()],
            )
            scatter = latent_scatter(mu, self.labels, f"{self.split} mu, epoch {epoch}", class_names=self.class_names)
            self.tracker.images("latent/scatter", to_tensor(scatter)[None], step, epoch, nrow=1)
        every = self.cfg.nll_iw_every_epochs
        if every > 0 and (epoch % every == 0 or last) and self.iw_count > 0:
            k, size = self.cfg.nll_iw_k, default_batch_size(self.cfg.nll_iw_k)
            what = f"{self.split}/nll_iw (K={k}, first {self.iw_count:,} of {self.iw_pool:,} {self.split} images)"
            log.info("epoch %d: estimating %s", epoch, what)
            result = evaluate_images(
                self.model,
                progress.tracked(
                    labelled_batches(self.iw_images, self.iw_labels, size),
                    f"epoch {epoch}: {self.split}/nll_iw K={k}",
                    total=batch_count(self.iw_count, size),
                    mode=self.cfg.progress,
                    every_s=self.cfg.progress_every_s,
                ),
                k=k,
                seed=self.cfg.seed,
                split=self.split,
            )
            log.info("epoch %d: %s = %.2f nats (%s)", epoch, what, result.nll_iw, progress.duration(result.seconds))
            scalars = {
                f"{self.split}/nll_iw": result.nll_iw,
                # What the estimate was computed from (metrics.json keeps them beside it).
                "nll_iw_k": k,
                "nll_iw_images": self.iw_count,
                "nll_iw_seconds": round(result.seconds, 3),
            }
            if self.model.likelihood.measures != Measures.cross_entropy:
                # A likelihood of the data (or a density, on the 8-bit scale): bits/dim compare with the literature.
                scalars[f"{self.split}/bits_per_dim"] = result.bits_per_dim
            self.tracker.scalars({k: v for k, v in scalars.items() if "/" in k}, step)
            return scalars
        return {}

    @torch.no_grad()
    def on_fit_end(self, step: int) -> None:
        """The embedding projector, once, for the final model (skipped when no epoch ran in this call)."""
        if not self.cfg.embedding or self.epochs_seen == 0 or self.images.shape[0] == 0:
            return
        was_training = self.model.training
        self.model.eval()
        mu, _ = self._encode()
        self.model.train(was_training)
        n = min(mu.shape[0], EMBEDDING_MAX_POINTS)
        mu, tag = projector_points(mu[:n])
        thumbnails = to_unit_float(self.images[:n].cpu())
        names = self.class_names
        metadata = [names[c] if 0 <= c < len(names) else str(c) for c in self.labels[:n].tolist()]
        self.tracker.embedding(mu, metadata, thumbnails, step, tag=tag)
