"""The feature networks sample quality is measured in.

- ``inception``: Inception-v3 as the FID literature uses it (the TF 2015 graph ported by torch-fidelity, pool3
  features, 2048-D; images resized to 299 the way TF 1.x did), its weights read from a local file
  (``--inception-weights PATH``, e.g. torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``) with
  ``torch.load(weights_only=True``; never downloaded at run time. Grey images are repeated to three channels.
  Its numbers are comparable with published FIDs computed the same way (same N, same reference split).
- ``trained``: a small convolutional classifier vae-cli trains on the dataset's own training split and labels
  (``trained_features.py``), cached per dataset: works offline and on small grey images, but its numbers are its
  own: not comparable with published FIDs, nor between datasets, nor with another version of this network. Every
  output carries its label and key.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from vae_cli.process.errors import ConfigError

INCEPTION_FEATURES = "2048"


class FeatureNetwork(nn.Module):
    """Images in [0, 1] ``[B, C, H, W]`` -> features ``[B, F]``; ``key`` identifies the exact network (numbers of two
    keys are never compared), ``label`` says what it is in words."""

    key: str = ""
    label: str = ""
    comparable_with_literature: bool = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class InceptionFeatures(FeatureNetwork):
    comparable_with_literature = True

    def __init__(self, extractor: nn.Module, weights: Path, digest: str) -> None:
        super().__init__()
        self.extractor = extractor
        self.key = f"inception-v3-fid:{digest[:12]}"
        self.label = f"Inception-v3 (FID weights {weights.name}, pool3 2048-D)"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.clamp(0, 1)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        (features,) = self.extractor((x * 255).round().to(torch.uint8))
        return features.float()


@contextmanager
def _weights_only_load(state: dict[str, Any]):
    """torch-fidelity loads a local weights file with ``torch.load(weights_only=False)`` (unpickling anything in it);
    it is handed the state already read with ``weights_only=True`` instead."""
    import torch_fidelity.feature_extractor_inceptionv3 as module

    with mock.patch.object(module.torch, "load", lambda *args, **kwargs: state):
        yield


def inception_features(weights: str | Path) -> InceptionFeatures:
    """Inception-v3 for FID from a local weights file (never downloaded)."""
    from hashlib import sha256

    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"--inception-weights {path}: no such file. Give the FID Inception-v3 weights in PyTorch format "
            f"(torch-fidelity's weights-inception-2015-12-05-6726825d.pth, downloaded once where there is internet), "
            f"or use --feature-network trained (offline; its numbers are not comparable with published FIDs)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"--inception-weights {path}: not a file of tensors torch can read with weights_only=True "
            f"({type(exc).__name__}); nothing in it was executed. Give the FID Inception-v3 weights in PyTorch format."
        ) from None
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        with _weights_only_load(state):
            extractor = FeatureExtractorInceptionV3(
                "inception-v3-compat", [INCEPTION_FEATURES], feature_extractor_weights_path=str(path)
            )
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(
            f"--inception-weights {path}: these weights do not fit the FID Inception-v3 ({str(exc).splitlines()[0]}). "
            f"Give torch-fidelity's weights-inception-2015-12-05-6726825d.pth."
        ) from None
    digest = sha256(path.read_bytes()).hexdigest()
    return InceptionFeatures(extractor.eval(), path, digest).eval()
