"""FID, KID and precision/recall against independent computations (numpy, scipy, closed forms, brute force), and the
feature networks: the offline classifier's cache, and Inception-v3 loaded from a local file without unpickling."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
import torch

from vae_cli.evaluation.sample_quality import metrics
from vae_cli.evaluation.sample_quality.metrics import frechet_distance, kernel_distance, precision_recall
from vae_cli.evaluation.sample_quality.trained_features import trained_features
from vae_cli.process.errors import ConfigError


def gaussian(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale + shift


def fid_scipy(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


def test_fid_of_a_set_against_itself_is_zero():
    a = gaussian(500, 6, 0)
    assert abs(frechet_distance(a, a)) < 1e-8


def test_fid_matches_scipy_and_the_closed_form_of_shifted_gaussians():
    a, b = gaussian(4000, 5, 1), gaussian(4000, 5, 2, shift=0.7, scale=2.0)
    assert frechet_distance(a, b) == pytest.approx(fid_scipy(a.numpy(), b.numpy()), rel=1e-8)
    # Population closed form: |0.7 * 1|^2 * 5 + 5 * (1 + 4 - 2 * 2) = 2.45 + 5 = 7.45; the estimate is close to it.
    assert frechet_distance(a, b) == pytest.approx(5 * 0.49 + 5 * (1 + 4 - 2 * 2), rel=0.05)


def kid_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """The unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 over the whole sets."""
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    m, n = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    return (
        (kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1)) - 2 * k(a, b).mean()
    )


def test_kid_is_the_unbiased_polynomial_mmd_and_near_zero_for_one_distribution():
    a, b = gaussian(300, 4, 3), gaussian(300, 4, 4, shift=0.5)
    got, _, size = kernel_distance(a, b, seed=0)
    assert size == 300  # every subset is the whole set: the estimate is the full-set statistic
    assert got == pytest.approx(kid_numpy(a.numpy(), b.numpy()), rel=1e-6)
    # Two independent samples of one distribution: unbiased, so the mean over seeds is 0 within its noise.
    values = [kernel_distance(gaussian(300, 4, 10 + s), gaussian(300, 4, 50 + s), seed=s)[0] for s in range(8)]
    assert abs(np.mean(values)) < 3 * np.std(values) / math.sqrt(len(values)) + 1e-4
    assert kid_numpy(a.numpy(), b.numpy()) > 10 * abs(np.mean(values))


def test_kid_subsets_come_from_the_seed():
    a, b = gaussian(2500, 4, 5), gaussian(2500, 4, 6, shift=0.2)
    assert kernel_distance(a, b, seed=3) == kernel_distance(a, b, seed=3)
    assert kernel_distance(a, b, seed=3)[0] != kernel_distance(a, b, seed=4)[0]


def precision_recall_brute(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    def radii(x):
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]

    def inside(q, x, r):
        d = np.sqrt(((q[:, None] - x[None]) ** 2).sum(-1))
        return (d <= r[None]).any(axis=1)

    return inside(fake, real, radii(real)).mean(), inside(real, fake, radii(fake)).mean()


def test_precision_recall_match_a_brute_force_count():
    real, fake = gaussian(300, 3, 7), gaussian(250, 3, 8, shift=0.8, scale=0.5)
    got = precision_recall(real, fake)
    want = precision_recall_brute(real.numpy(), fake.numpy())
    assert got == pytest.approx(want, abs=1e-12)
    with mock.patch.object(metrics, "DISTANCE_CHUNK", 64):  # chunked the same
        assert precision_recall(real, fake) == got


def test_precision_recall_are_one_for_identical_sets_and_drop_for_disjoint_ones():
    a = gaussian(400, 4, 9)
    assert precision_recall(a, a) == (1.0, 1.0)
    assert precision_recall(a, a + 100.0) == (0.0, 0.0)
    # Half the fake points far away: precision halves, recall stays (the other half still covers the real set).
    half = torch.cat([gaussian(400, 4, 11), gaussian(400, 4, 12) + 100.0])
    precision, recall = precision_recall(a, half)
    assert 0.4 < precision < 0.6 and recall > 0.9
    # A collapsed generator: every fake point inside the real manifold, little of it covered.
    collapsed = gaussian(400, 4, 13, scale=0.05)
    precision, recall = precision_recall(a, collapsed)
    assert precision > 0.9 and recall < 0.2


def test_the_trained_feature_network_is_cached_and_reloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_CLI_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(2000) % 4  # four classes of brightness: learnable in the network's two epochs
    images = (torch.rand(2000, 1, 12, 12, generator=g) * 60 + labels[:, None, None, None] * 60).to(torch.uint8)
    first = trained_features("toy", images, labels, images[:100], labels[:100])
    files = list((tmp_path / "feature-nets").glob("toy-*.pt"))
    assert len(files) == 1 and first.meta["test_accuracy"] > 0.5
    with mock.patch("vae_cli.evaluation.sample_quality.trained_features.train_classifier") as train:
        again = trained_features("toy", images, labels, images[:100], labels[:100])
    train.assert_not_called()
    assert again.key == first.key and "not comparable with published" in again.label
    x = images[:8].float() / 255
    torch.testing.assert_close(again(x), first(x))
    # A damaged cache entry is retrained, not trusted.
    files[0].write_bytes(b"garbage")
    third = trained_features("toy", images, labels, images[:100], labels[:100])
    assert third.key == first.key  # the same seed and data: the same weights


def test_the_trained_feature_network_needs_labels():
    with pytest.raises(ConfigError, match="no class labels"):
        trained_features(
            "folder", torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.full((10,), -1), torch.zeros(0), torch.zeros(0)
        )


def test_inception_weights_load_from_a_local_file_without_unpickling(tmp_path):
    """The real loading code on a weights file made here (random weights of the FID Inception's architecture):
    read with weights_only=True, handed to torch-fidelity's network, features from them."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf

    from vae_cli.evaluation.sample_quality.features import inception_features

    with (
        mock.patch.object(tf.torch, "load", lambda *a, **k: {}),
        mock.patch.object(tf.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None),
    ):
        torch.manual_seed(0)
        reference = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="x")
    weights = tmp_path / "inception.pth"
    torch.save(reference.state_dict(), weights)
    net = inception_features(weights)
    assert net.key.startswith("inception-v3-fid:") and net.comparable_with_literature
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    got = net(images)
    (want,) = reference.eval()((images.repeat(1, 3, 1, 1) * 255).round().to(torch.uint8))
    assert got.shape == (2, 2048)
    torch.testing.assert_close(got, want.float())
    # A pickle with code in it is refused, never run.
    evil = tmp_path / "evil.pth"
    torch.save({"x": torch.zeros(1), "f": print}, evil)
    with pytest.raises(ConfigError, match="weights_only"):
        inception_features(evil)
    with pytest.raises(ConfigError, match="no such file"):
        inception_features(tmp_path / "missing.pth")
