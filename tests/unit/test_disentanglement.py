"""The disentanglement metrics against known answers (as disentanglement_lib's own tests) and independent
computations (scikit-learn, scipy, closed forms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import mutual_info_score

from vae_cli.config.disentanglement import DisentanglementConfig
from vae_cli.evaluation.disentanglement.dci import completeness, disentanglement
from vae_cli.evaluation.disentanglement.information import entropy, histogram_discretize, mutual_information
from vae_cli.evaluation.disentanglement.mig import mig
from vae_cli.evaluation.disentanglement.sampling import codes_and_factors
from vae_cli.evaluation.disentanglement.suite import score
from vae_cli.factors.ground_truth import FactorGrid


class IdentityObservations(FactorGrid):
    """disentanglement_lib's dummy data: the observations are the factors themselves."""

    def observations(self, factors, rng=None):
        return np.asarray(factors, dtype=np.float64)


# Ten factors, as disentanglement_lib's dummy data: chance for the vote-based scores is 1/10.
DATA = IdentityObservations([f"f{i}" for i in range(10)], [6] * 10)


def small(**changes) -> DisentanglementConfig:
    cfg = DisentanglementConfig()
    cfg.mig.num_train = 3000
    cfg.dci.num_train, cfg.dci.num_test = 1500, 500
    cfg.sap.num_train, cfg.sap.num_test = 2000, 1000
    cfg.sap.continuous = True  # the identity test of disentanglement_lib scores SAP this way
    cfg.factor_vae.num_train, cfg.factor_vae.num_eval, cfg.factor_vae.num_variance_estimate = 500, 300, 2000
    cfg.beta_vae.num_train, cfg.beta_vae.num_eval = 500, 300
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def identity_scores():
    return score(DATA, lambda x: x, small())


def test_a_perfect_representation_scores_high_on_every_metric(identity_scores):
    scores = identity_scores.scores
    assert set(scores) == {
        "disentanglement/mig",
        "disentanglement/dci_disentanglement",
        "disentanglement/dci_completeness",
        "disentanglement/dci_informativeness_test",
        "disentanglement/sap",
        "disentanglement/factor_vae_score",
        "disentanglement/beta_vae_score",
    }
    for name, value in scores.items():
        assert 0.9 <= value <= 1.0 + 1e-9, (name, value)


@pytest.mark.parametrize(
    "name,represent",
    [
        ("zeros", lambda x: np.zeros_like(x)),
        ("random", lambda x: np.random.default_rng(len(x) + int(x.sum())).normal(size=x.shape)),
    ],
)
def test_an_uninformative_representation_scores_low_on_every_metric(name, represent):
    cfg = small()
    cfg.dci.num_train, cfg.dci.num_test = 600, 300  # trees on noise grow deep: the slowest case
    result = score(DATA, represent, cfg)
    for metric, value in result.scores.items():
        limit = 0.2 if "informativeness" not in metric else 1 / 6 + 0.05  # chance accuracy of 6 levels
        assert value <= limit, (name, metric, value)
    discrete = score(DATA, represent, small(metrics=["sap"]))
    assert discrete.scores["disentanglement/sap"] <= 0.2


def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_draws():
    a = score(DATA, lambda x: x + 0.1 * np.sin(x * 7), small(metrics=["mig", "beta_vae"]))
    b = score(DATA, lambda x: x + 0.1 * np.sin(x * 7), small(metrics=["mig", "beta_vae"]))
    assert a.scores == b.scores
    # Each metric has its own stream: dropping one does not change another.
    only = score(DATA, lambda x: x + 0.1 * np.sin(x * 7), small(metrics=["beta_vae"]))
    assert only.scores["disentanglement/beta_vae_score"] == a.scores["disentanglement/beta_vae_score"]
    c = score(DATA, lambda x: x + 0.1 * np.sin(x * 7), small(metrics=["mig"], seed=5))
    assert c.details["mig"]["per_factor"] != a.details["mig"]["per_factor"]


# ----- DCI on hand-built importance matrices: the exact values ------------------------------------------------


def entropy_base(p, base):  # an independent computation: scipy normalizes and takes the log in the base
    return scipy.stats.entropy(p, base=base)


def test_dci_of_hand_built_importance_matrices():
    assert disentanglement(np.eye(4)) == pytest.approx(1.0) and completeness(np.eye(4)) == pytest.approx(1.0)
    assert disentanglement(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-9)
    assert completeness(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-9)
    # Two codes, two factors: code 0 serves factor 0 three times as much as factor 1, code 1 only factor 1.
    r = np.array([[0.75, 0.25], [0.0, 1.0]])
    h0 = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))  # 0.811278
    assert disentanglement(r) == pytest.approx(0.5 * (1 - h0) + 0.5 * 1.0, abs=1e-9)  # 0.594361
    # Factor 0 lives in code 0 alone; factor 1 is split 0.25 : 1 = 0.2 : 0.8.
    h1 = -(0.2 * math.log2(0.2) + 0.8 * math.log2(0.8))  # 0.721928
    assert completeness(r) == pytest.approx(0.375 * 1.0 + 0.625 * (1 - h1), abs=1e-9)  # 0.548795
    assert disentanglement(r) == pytest.approx(0.594361, abs=1e-6) and completeness(r) == pytest.approx(
        0.548795, abs=1e-6
    )
    # The entropy bases: F (factors) for disentanglement, D (codes) for completeness. 3 codes, 2 factors:
    r = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0]])
    per_code = [1 - entropy_base(row, 2) for row in r]
    per_factor = [1 - entropy_base(col, 3) for col in r.T]
    assert disentanglement(r) == pytest.approx(np.dot(per_code, r.sum(1) / r.sum()), abs=1e-9)
    assert completeness(r) == pytest.approx(np.dot(per_factor, r.sum(0) / r.sum()), abs=1e-9)
    # Codes no classifier used count for nothing; an all-zero matrix is no disentanglement at all.
    with_dead = np.vstack([np.eye(2), np.zeros((2, 2))])
    assert disentanglement(with_dead) == pytest.approx(1.0, abs=1e-6)
    assert completeness(with_dead) == pytest.approx(1.0, abs=1e-6)
    assert disentanglement(np.zeros((3, 2))) == pytest.approx(0.0, abs=1e-6)


# ----- MIG's ingredients against scikit-learn and numpy ------------------------------------------------------


def test_entropy_and_mutual_information_match_scikit_learn_and_scipy():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 7, 5000)
    b = (a + rng.integers(0, 3, 5000)) % 9
    assert mutual_information(a, b) == pytest.approx(mutual_info_score(a, b), abs=1e-12)
    assert mutual_information(a, a) == pytest.approx(entropy(a), abs=1e-12)
    _, counts = np.unique(a, return_counts=True)
    assert entropy(a) == pytest.approx(scipy.stats.entropy(counts), abs=1e-12)


def test_histogram_discretization_is_numpys_per_dimension():
    codes = np.random.default_rng(1).normal(size=(1000, 3)) * [1, 10, 0.01]
    out = histogram_discretize(codes, 20)
    for d in range(3):
        edges = np.linspace(codes[:, d].min(), codes[:, d].max(), 21)
        np.testing.assert_array_equal(out[:, d], np.digitize(codes[:, d], edges[:-1]))
    assert out.min() == 1 and out.max() == 20
    assert np.all(histogram_discretize(np.zeros((50, 1)), 20) == histogram_discretize(np.zeros((50, 1)), 20)[0])


def test_mig_is_the_normalized_gap_between_the_two_most_informative_codes():
    rng = np.random.default_rng(2)
    factors = rng.integers(0, 8, (4000, 2))
    # Code 0 = factor 0; code 1 = factor 0 again; code 2 = factor 1: factor 0 has no gap, factor 1 the full one.
    codes = np.stack([factors[:, 0], factors[:, 0], factors[:, 1]], axis=1).astype(float)
    out = mig(codes, factors, num_bins=8)
    h1 = scipy.stats.entropy(np.unique(factors[:, 1], return_counts=True)[1])
    runner_up = mutual_info_score(factors[:, 0], factors[:, 1])  # the plug-in estimate's small positive bias
    assert out["per_factor"][0] == pytest.approx(0.0, abs=1e-12)
    assert out["per_factor"][1] == pytest.approx((h1 - runner_up) / h1, abs=1e-9)
    assert out["mig"] == pytest.approx(np.mean(out["per_factor"]), abs=1e-12) and out["mig"] > 0.49
    # The histogram version: 40 levels squeezed into 20 bins keep at most log 20 of log 40 nats.
    many = rng.integers(0, 40, (20000, 1))
    assert mig(np.hstack([many, rng.normal(size=(20000, 1))]).astype(float), many, 20)["mig"] == pytest.approx(
        math.log(20) / math.log(40), abs=0.02
    )


def test_sap_continuous_is_the_squared_correlation_and_discrete_ranks_the_right_code():
    from vae_cli.evaluation.disentanglement.sap import sap, squared_correlations

    rng = np.random.default_rng(3)
    train = codes_and_factors(DATA, lambda x: x + rng.normal(size=x.shape), 2000, rng)
    test = codes_and_factors(DATA, lambda x: x + rng.normal(size=x.shape), 1000, rng)
    s = np.array(sap(*train, *test, continuous=True)["scores"])
    expected = np.array(
        [[np.corrcoef(train[0][:, d], train[1][:, k])[0, 1] ** 2 for k in range(10)] for d in range(10)]
    )
    np.testing.assert_allclose(s, expected, atol=1e-12)
    np.testing.assert_allclose(squared_correlations(train[0][:, :1] * 0, train[1].astype(float)), 0.0)
    discrete = np.array(sap(*train, *test)["scores"])
    assert all(discrete[k, k] == discrete[:, k].max() for k in range(10))


def test_factor_vae_votes_name_the_real_code_dimensions_and_skip_dead_ones():
    from vae_cli.evaluation.disentanglement.factor_vae_score import factor_vae_score

    def represent(x):  # a dead dimension first, then the factors in reverse order
        return np.hstack([np.zeros((len(x), 1)), x[:, ::-1]])

    out = factor_vae_score(DATA, represent, np.random.default_rng(0), 64, 300, 200, 1000)
    assert out["eval_accuracy"] == 1.0 and out["num_active_dims"] == 10
    votes = np.array(out["votes"])
    assert votes[:, 0].sum() == 0  # never the dead dimension
    for k in range(10):
        assert votes[k].argmax() == 10 - k  # factor k lives in dimension 10 - k


def test_the_encoder_mean_is_the_representation_and_other_models_are_refused():
    import torch

    from tests.conftest import model_config
    from vae_cli.config.architectures import MLPConfig
    from vae_cli.evaluation.disentanglement.representation import encoder_mean
    from vae_cli.models.build import build_model
    from vae_cli.process.errors import ConfigError

    torch.manual_seed(0)
    model = build_model(model_config(MLPConfig(hidden_dims=[16], latent_dim=3)), (1, 4, 4))
    images = np.random.default_rng(0).integers(0, 256, (10, 1, 4, 4), dtype=np.uint8)
    codes = encoder_mean(model, batch_size=3)(images)
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(images).float() / 255)
    np.testing.assert_allclose(codes, mu.numpy(), rtol=1e-6, atol=1e-6)
    model.num_classes = 10
    with pytest.raises(ConfigError, match="conditional"):
        encoder_mean(model)
