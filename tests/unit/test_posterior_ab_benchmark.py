"""benchmarks/posterior_ab.py runs: a posterior's step against its version at a commit (here HEAD's), one process."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the repository's git history"
)
def test_posterior_ab_times_both_versions_and_prints_their_ratio():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "posterior_ab.py"),
            "--rev=HEAD",
            "--module=planar",
            "--cls=PlanarPosterior",
            "--blocks=2",
            "--steps=2",
            "--",
            "posterior=planar",
            "posterior.flows=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"HEAD ([0-9.]+) ms, working tree ([0-9.]+) ms, HEAD/new ([0-9.]+)x", proc.stdout)
    assert found, proc.stdout
    old, new, ratio = (float(v) for v in found.groups())
    assert old > 0 and new > 0 and ratio == pytest.approx(old / new, rel=0.01)


@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the repository's git history"
)
def test_posterior_ab_from_a_trained_run_loads_its_last_checkpoint(tmp_path):
    # --from-run: the step at a trained run's weights (kept: learning rate 0) on its first test images.
    from tests.conftest import TINY, run_vae_train

    shape = [
        "dataset=synthetic",
        "model.hidden_dims=[64]",
        "model.latent_dim=4",
        "posterior=vmf",
        "prior=uniform_sphere",
    ]
    run = tmp_path / "run"
    run_vae_train([*TINY, *shape[3:], f"hydra.run.dir={run}"], cwd=tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "posterior_ab.py"),
            "--rev=HEAD",
            "--module=vmf",
            "--cls=VMFPosterior",
            f"--from-run={run}",
            "--blocks=2",
            "--steps=2",
            "--",
            *shape,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        f"weights: {run / 'checkpoints' / 'last.pt'} (epoch 2, step 16), learning rate 0" in proc.stdout
    )  # 512 training images / 64, 2 epochs
    assert "its first 128 test images" in proc.stdout
    assert re.search(r"HEAD [0-9.]+ ms, working tree [0-9.]+ ms", proc.stdout), proc.stdout


def test_posterior_ab_refuses_a_from_run_that_is_not_a_run(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "posterior_ab.py"),
            "--rev=HEAD",
            "--module=vmf",
            "--cls=VMFPosterior",
            f"--from-run={tmp_path / 'missing'}",
            "--",
            "posterior=vmf",
            "prior=uniform_sphere",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--from-run:" in proc.stderr and "does not exist" in proc.stderr
