from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from tests.conftest import compose_config
from vae_cli.config.catalog import LIKELIHOODS
from vae_cli.config.overrides import check_overrides
from vae_cli.config.tree import config_dir
from vae_cli.config.validate import validate
from vae_cli.process.errors import ConfigError


def test_defaults_are_the_classic_vae():
    cfg = compose_config()
    assert cfg.dataset.name == "fashion_mnist"
    assert cfg.model.arch == "mlp" and list(cfg.model.hidden_dims) == [400] and cfg.model.latent_dim == 20
    assert cfg.likelihood.name == "bernoulli" and cfg.loss.name == "elbo" and cfg.loss.beta == 1.0
    assert cfg.prior.name == "normal" and cfg.model.conditional is False
    assert cfg.optim.name.value == "adam" and cfg.optim.lr == 1e-3
    assert cfg.trainer.batch_size == 128 and cfg.trainer.epochs == 10
    validate(cfg)


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.lattent_dim=3", "lattent_dim"),
        ("trainer.epochs=ten", "epochs"),
        ("loss.k=5", "loss.k"),  # a key of loss=iwae only
        ("optim.schedule=linear", "schedule"),
    ],
)
def test_misspelt_keys_and_wrong_types_fail_at_composition_naming_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        compose_config([override])
    text = str(info.value) + str(info.value.__cause__)
    assert key in text


def test_an_unknown_option_name_is_refused_naming_the_key_and_the_options():
    # A family's option name is a plain string (a new option needs no enum edit); the preflight and validate
    # refuse an unknown one by name.
    assert check_overrides(["likelihood.name=poisson"], Path(config_dir())) == [
        f"likelihood.name='poisson' is not valid: likelihood.name must be one of {', '.join(LIKELIHOODS.names())} "
        "(choose it with likelihood=<option>)."
    ]
    assert LIKELIHOODS.names()[:4] == ("bernoulli", "continuous_bernoulli", "gaussian", "logistic_mixture")
    with pytest.raises(ConfigError, match=r"likelihood\.name=poisson is not a likelihood.*likelihood=bernoulli"):
        validate(compose_config(["likelihood.name=poisson"]))


def test_unknown_group_choice_fails_naming_the_choices():
    with pytest.raises(Exception) as info:
        compose_config(["dataset=imagenet"])
    assert "imagenet" in str(info.value) and "fashion_mnist" in str(info.value)


def test_validate_reports_every_problem_at_once():
    cfg = compose_config(["trainer.epochs=0", "optim.lr=-1", "loss.beta=-2", "model.latent_dim=0"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    for key in ("trainer.epochs", "optim.lr", "loss.beta", "model.latent_dim"):
        assert key in message


def test_conv_needs_image_size_divisible_by_its_downsampling():
    cfg = compose_config(["model=conv", "model.conv_channels=[8,8,8]"])  # 28 is not divisible by 8
    with pytest.raises(ConfigError, match="divisible by 8"):
        validate(cfg)
    validate(compose_config(["model=conv"]))  # 28 / 4 = 7 is fine


def test_weight_decay_with_plain_adam_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="optim=adamw"):
        validate(compose_config(["optim.weight_decay=0.01"]))
    validate(compose_config(["optim=adamw"]))


def test_experiment_overlays_apply():
    cfg = compose_config(["experiment=beta_vae"])
    assert cfg.model.arch == "conv" and cfg.loss.beta == 4.0 and cfg.trainer.epochs == 20


def test_config_round_trips_to_plain_yaml():
    cfg = compose_config()
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert plain["likelihood"]["name"] == "bernoulli"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        # Each swept colour dataset picks the conv model; the sweep-level config (swept keys left out) would be the MLP.
        (["dataset=cifar10,svhn", "model.conv_channels=[8,16]"], ["model=conv"]),
        (["dataset=cifar10,svhn", "model.latent_dim=8"], ["model=conv"]),
        (["dataset=cifar10,svhn", "model=conv", "model.conv_channels=[8]"], []),  # already named
        (["dataset=cifar10,svhn", "trainer.epochs=2"], []),  # no model key: nothing to fix
        (["dataset=mnist,cifar10", "model.latent_dim=8"], []),  # the jobs differ: the preflight judges each
        (["dataset=cifar10", "model.conv_channels=[8]"], []),  # not a sweep
        (["loss.beta=1,2", "model.latent_dim=8"], []),  # the swept key picks no family
    ],
)
def test_a_sweep_names_the_family_its_swept_datasets_pick(overrides, expected):
    from tests.conftest import REPO
    from vae_cli.config.overrides import sweep_family_choices

    assert sweep_family_choices(overrides, REPO / "configs") == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["loss=dip_vae", "trainer.eval_batch_size=1"],
            "loss=dip_vae estimates a covariance over the batch and needs trainer.eval_batch_size >= 2 (got 1)",
        ),
        (["loss=info_vae", "trainer.batch_size=1"], "needs trainer.batch_size >= 2 (got 1)"),
        (["loss=factor_vae", "trainer.eval_batch_size=1"], "needs trainer.eval_batch_size >= 2"),
        (
            ["loss=beta_tcvae", "loss.estimator=mss", "trainer.eval_batch_size=2"],
            "loss.estimator=mss stratifies "
            "log q(z) over the other images of a batch and needs trainer.eval_batch_size >= 3 (got 2)",
        ),
    ],
)
def test_objectives_of_batch_statistics_need_batches_of_several_images_for_evaluation_too(overrides, message):
    with pytest.raises(ConfigError) as info:
        validate(compose_config(overrides))
    assert message in " ".join(str(info.value).split())
    validate(compose_config(["loss=beta_tcvae", "trainer.eval_batch_size=1"]))  # mws: a per-image weighting
    validate(compose_config(["loss=elbo", "trainer.eval_batch_size=1"]))


def test_a_short_last_evaluation_batch_joins_the_one_before():
    import torch

    from vae_cli.datasets.batches import labelled_batches

    images = torch.arange(11, dtype=torch.uint8).reshape(11, 1, 1, 1)
    labels = torch.arange(11)

    def sizes(batch_size, least):
        got = list(labelled_batches(images, labels, batch_size, least))
        assert torch.equal(torch.cat([y for _, y in got]), labels)  # every image once, in order
        return [len(y) for _, y in got]

    assert sizes(5, 1) == [5, 5, 1]
    assert sizes(5, 2) == [5, 6]
    assert sizes(4, 3) == [4, 4, 3]
    assert sizes(20, 3) == [11]


def test_a_config_read_back_from_a_file_is_data_never_resolved(tmp_path, monkeypatch):
    """A checkpoint's config with interpolations in it (a crafted file: the digest is unkeyed, anyone can recompute
    it) stays text where the key is text, and is refused where it is not; no resolver runs either way."""
    from vae_cli.config.schema import structured, to_plain_dict
    from vae_cli.runs.resolvers import register_resolvers

    register_resolvers()
    monkeypatch.setenv("EVIL", "from-the-environment")
    plain = to_plain_dict(compose_config(["dataset=synthetic"]))
    target = tmp_path / "made-by-a-resolver"
    plain["dataset"]["root"] = f"${{unique_dir:{target}}}"
    plain["dataset"]["cache_dir"] = "${oc.env:EVIL}"
    plain["logger"]["tensorboard"] = True
    cfg = structured(plain)
    assert cfg.dataset.root == f"${{unique_dir:{target}}}" and cfg.dataset.cache_dir == "${oc.env:EVIL}"
    assert OmegaConf.to_container(cfg, resolve=True)["dataset"]["cache_dir"] == "${oc.env:EVIL}"
    assert not target.exists()
    plain["dataset"]["root"] = r"C:\${not-an-escape}"  # backslashes before ${ come back exactly
    assert structured(plain).dataset.root == r"C:\${not-an-escape}"
    plain["trainer"]["device"] = "${oc.env:EVIL,cpu}"
    with pytest.raises(ConfigError, match=r"holds '\$\{oc.env:EVIL,cpu\}' at trainer.device"):
        structured(plain)
    plain["trainer"]["device"] = "cpu"
    plain["trainer"]["epochs"] = "${oc.env:EVIL}"
    with pytest.raises(ConfigError, match=r"at trainer\.epochs"):
        structured(plain)
