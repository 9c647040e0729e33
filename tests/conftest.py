"""Shared test helpers: compose the real config (shrunk), and run the installed ``vae-train`` in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from vae_cli.config.architectures import MLPConfig, ModelConfig
from vae_cli.config.likelihoods import LikelihoodConfig
from vae_cli.config.posteriors import PosteriorConfig
from vae_cli.config.priors import PriorConfig
from vae_cli.config.schema import register_configs
from vae_cli.config.tree import config_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

# Overrides that shrink any run to a second or two on CPU: synthetic data, a small MLP, two epochs.
TINY = [
    "dataset=synthetic",
    "dataset.num_train=640",
    "dataset.num_test=128",
    "dataset.val_size=128",
    "model.hidden_dims=[64]",
    "model.latent_dim=4",
    "trainer.epochs=2",
    "trainer.batch_size=64",
    "trainer.log_every_steps=2",
    "trainer.num_images=16",
    "trainer.eval_batch_size=256",
]


def real_data_required() -> bool:
    """CI sets VAE_CLI_REQUIRE_REAL_DATA=1: there a missing real dataset fails the test instead of skipping."""
    return os.environ.get("VAE_CLI_REQUIRE_REAL_DATA") == "1"


def need_path(path: Path, what: str) -> None:
    if not path.exists():
        if real_data_required():
            pytest.fail(f"{what} is required here but missing: {path}")
        pytest.skip(f"{what} not present at {path}")


def vae_train_executable() -> str:
    """The installed console script of the environment running the tests."""
    candidate = Path(sys.executable).parent / "vae-train"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("vae-train")
    if found is None:
        pytest.fail("vae-train is not installed in this environment: run pip install -e '.[dev]' first")
    return found


def run_vae_train(
    args: list[str], cwd: Path, timeout: float = 300, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [vae_train_executable(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"vae-train {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_tool(name: str, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run another installed command (vae-eval, vae-sample, vae-compare) beside vae-train."""
    exe = Path(vae_train_executable()).parent / name
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def stopped_mid_run_then_resumed(args: list[str], run: Path, cwd: Path, after: str, timeout: float = 300) -> None:
    """Train ``args`` into ``run``, Ctrl-C it as soon as its log shows ``after`` (e.g. "epoch 1/3": inside epoch 2,
    mid-epoch), check it stopped with a mid-epoch checkpoint, then resume it to the end."""
    import signal
    import time

    import torch

    proc = subprocess.Popen(
        [vae_train_executable(), *args, f"hydra.run.dir={run}"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + timeout
    # An epoch's own line ("epoch 1/3  train ..."), not a progress line within it ("epoch 1/3: 40/96 batches").
    marker = f"{after}  train" if after.startswith("epoch ") else after
    while not ((run / "vae-train.log").is_file() and marker in (run / "vae-train.log").read_text()):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 130, err
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["batch_in_epoch"] > 0
    run_vae_train([f"trainer.resume={run}"], cwd=cwd, timeout=2 * timeout)


def single_run_dir(cwd: Path) -> Path:
    """The one run directory a single `vae-train` call made under cwd/outputs/<date>/<time>/."""
    runs = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir() and p.parent.name != "multirun"]
    assert len(runs) == 1, f"expected one run directory, found {runs}"
    return runs[0]


def model_config(
    model: ModelConfig | None = None,
    prior: PriorConfig | None = None,
    likelihood: LikelihoodConfig | None = None,
    posterior: PosteriorConfig | None = None,
) -> DictConfig:
    """The model-defining part of a config (``model``, ``prior``, ``likelihood``, ``posterior``), for
    ``build_model`` in unit tests."""
    return OmegaConf.create(
        {
            "model": OmegaConf.structured(model or MLPConfig()),
            "prior": OmegaConf.structured(prior or PriorConfig()),
            "likelihood": OmegaConf.structured(likelihood or LikelihoodConfig()),
            "posterior": OmegaConf.structured(posterior or PosteriorConfig()),
        }
    )


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=overrides or [])


@pytest.fixture
def tiny_cfg() -> DictConfig:
    return compose_config(TINY)
