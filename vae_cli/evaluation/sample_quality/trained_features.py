"""The offline feature network: a small convolutional classifier trained on a dataset's own training split, whose
penultimate layer (128 ReLU features of a fully connected layer over a 4x4 map of 128 channels) is the space FID, KID and precision/recall are
measured in when no Inception-v3 weights are at hand (and on small grey images, which Inception was never trained on).

It is trained once per dataset and preprocessing (the key hashes the training images and labels as the run sees them),
from a fixed seed inside a forked RNG, and cached as ``<cache>/feature-nets/<dataset>-<data digest>.pt`` (tensors
and plain data, with a checksum); later evaluations load it. Its key names the weights' own digest, so numbers made
with two different trainings (another machine's threads can round differently) are never ranked together.
Its test accuracy is recorded beside it: a feature network that cannot tell the classes apart measures little.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vae_cli.datasets.batches import labelled_batches
from vae_cli.datasets.preprocess import to_unit_float
from vae_cli.evaluation.sample_quality.features import FeatureNetwork
from vae_cli.process import progress
from vae_cli.process.atomic import atomic_write
from vae_cli.process.cache_dir import user_cache_dir
from vae_cli.process.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the architecture or its training changes
EPOCHS = 2
BATCH = 128
SEED = 0
FEATURES = 128


class Classifier(nn.Module):
    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc = nn.Linear(128 * 4 * 4, FEATURES)
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, ceil_mode=True)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, ceil_mode=True)
        x = F.adaptive_max_pool2d(F.relu(self.conv3(x)), 4)  # any image size: a 4x4 map of 128 channels
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TrainedFeatures(FeatureNetwork):
    def __init__(self, classifier: Classifier, meta: dict[str, Any], weights_digest: str) -> None:
        super().__init__()
        self.classifier = classifier
        self.meta = meta
        self.key = f"vae-cli-classifier:{meta['dataset']}:{weights_digest[:12]}"
        self.label = (
            f"vae-cli's own classifier features ({FEATURES}-D), trained on {meta['dataset']}'s training split "
            f"(test accuracy {100 * meta['test_accuracy']:.1f}%): not comparable with published Inception FIDs"
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images.float())


def data_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(f"{FORMAT}:{tuple(images.shape)}".encode())
    h.update(memoryview(images.contiguous().view(-1).numpy()))
    h.update(memoryview(labels.contiguous().to(torch.int64).numpy()))
    return h.hexdigest()


def state_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(memoryview(state[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


@torch.no_grad()
def accuracy(net: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    correct = 0
    for x, y in labelled_batches(images, labels, 1000):
        correct += int((net(x).argmax(1) == y).sum())  # labelled_batches gives [0, 1] floats
    return correct / max(1, images.shape[0])


def train_classifier(train: torch.Tensor, labels: torch.Tensor, classes: int) -> Classifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        net = Classifier(train.shape[1], classes)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        order = torch.Generator().manual_seed(SEED)
        n = train.shape[0]
        for epoch in range(EPOCHS):
            batches = torch.randperm(n, generator=order).split(BATCH)
            for idx in progress.tracked(batches, f"feature network, epoch {epoch + 1}/{EPOCHS}", total=len(batches)):
                loss = F.cross_entropy(net(to_unit_float(train[idx])), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return net.eval()


def trained_features(
    dataset: str, train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor
) -> TrainedFeatures:
    """The dataset's feature network: from the cache, or trained now and cached (uint8 images, int64 labels)."""
    if train_labels.numel() == 0 or int(train_labels.min()) < 0:
        raise ConfigError(
            f"--feature-network trained learns its features by classifying {dataset}'s training images, and "
            f"{dataset} has no class labels. Use --feature-network inception --inception-weights PATH (the FID "
            f"Inception-v3 weights) for this dataset."
        )
    classes = int(train_labels.max()) + 1
    train, train_labels = train.cpu(), train_labels.cpu()
    digest = data_digest(train, train_labels)
    path = user_cache_dir() / "feature-nets" / f"{dataset}-{digest[:16]}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            net = Classifier(train.shape[1], classes)
            net.load_state_dict(saved["state"])
            if saved["weights_digest"] == state_digest(saved["state"]):
                return TrainedFeatures(net.eval(), saved["meta"], saved["weights_digest"])
            log.warning("the cached feature network %s does not match its checksum; training it again", path)
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log.warning("the cached feature network %s is unreadable (%s); training it again", path, type(exc).__name__)
    log.info(
        "training the feature network for %s (%d images, %d epochs; once, cached in %s)",
        dataset,
        train.shape[0],
        EPOCHS,
        path.parent,
    )
    net = train_classifier(train, train_labels, classes)
    meta = {
        "dataset": dataset,
        "format": FORMAT,
        "data_digest": digest,
        "train_images": int(train.shape[0]),
        "classes": classes,
        "epochs": EPOCHS,
        "seed": SEED,
        "test_accuracy": accuracy(net, test.cpu(), test_labels.cpu()) if test.shape[0] else float("nan"),
    }
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    weights_digest = state_digest(state)
    try:
        with atomic_write(path) as f:
            torch.save({"state": state, "meta": meta, "weights_digest": weights_digest}, f)
    except OSError as exc:  # an unwritable cache costs a retraining next time, not this evaluation
        log.warning("could not cache the feature network in %s: %s", path, exc)
    return TrainedFeatures(net, meta, weights_digest)
