"""Runs that survive faults and bad input: signals, SIGKILL at random moments, NaN, disk and permission
faults, hostile checkpoints, and bit-identical reruns. Everything goes through the real `vae-train`."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, run_vae_train, vae_train_executable
from tests.e2e.events import load_events, scalar_steps
from vae_cli.training.checkpoint import load_checkpoint

# Long enough (~16 steps an epoch, 4 epochs) that a signal lands mid-run; still seconds.
LONGER = [*TINY, "trainer.epochs=4", "dataset.num_train=1152"]


def _start(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [vae_train_executable(), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"run ended early:\n{proc.stderr.read() if proc.stderr else ''}"
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must match."""
    cwd = tmp_path_factory.mktemp("reference")
    run_vae_train([*LONGER, f"hydra.run.dir={cwd / 'run'}"], cwd=cwd)
    return cwd / "run"


# SIGHUP: a dropped ssh session or a closed terminal stops the run as SIGTERM does, resumable.
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_checkpoints_mid_epoch_and_prints_the_resume_command(tmp_path, reference_run, sig, code):
    run = tmp_path / "run"
    proc = _start([*LONGER, f"hydra.run.dir={run}"], cwd=tmp_path)
    _wait_for(run / "checkpoints" / "last.pt", proc)
    # Past the end of epoch 1 (its checkpoints and log line): the signal lands inside epoch 2.
    deadline = time.time() + 60
    while "epoch 1/4  train" not in (run / "vae-train.log").read_text() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"Resume with: vae-train trainer.resume={run}" in err and "Traceback" not in err
    assert f"Stopped by {signal.Signals(sig).name}" in err
    assert json.loads((run / "run.json").read_text())["state"] == "interrupted"
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["batch_in_epoch"] >= 1, "the stop checkpoint should hold a mid-epoch position"
    assert list(run.glob("events.out.tfevents.*"))

    run_vae_train([f"trainer.resume={run}"], cwd=tmp_path)
    _assert_same_weights(run, reference_run)
    ref_metrics = json.loads((reference_run / "metrics.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("train/loss", "val/elbo", "test/elbo", "steps"):
        assert metrics[key] == ref_metrics[key], key
    steps = scalar_steps(load_events(run), "train/loss")
    assert steps == sorted(set(steps))


def test_sigkill_at_random_moments_never_corrupts_the_checkpoint(tmp_path, reference_run):
    """Checkpoint every step, so the kills land during writes too; each time the last checkpoint must load."""
    run = tmp_path / "run"
    args = [*LONGER, f"hydra.run.dir={run}", "trainer.checkpoint_every_steps=1"]
    rng = random.Random(1234)
    kills = 0
    proc = _start(args, cwd=tmp_path)
    for _ in range(4):
        _wait_for(run / "checkpoints" / "last.pt", proc)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        kills += 1
        ckpt = load_checkpoint(run / "checkpoints" / "last.pt")  # raises if half-written
        assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
        proc = _start([f"trainer.resume={run}"], cwd=tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills >= 2
    _assert_same_weights(run, reference_run)
    assert not list((run / "checkpoints").glob(".*.tmp")), "stale temporary files were left behind"


def _healthy_then_diverging(tmp_path: Path, *extra: str) -> tuple[Path, subprocess.CompletedProcess]:
    """One healthy epoch, then a resume with a learning rate that blows the model up in epoch 2."""
    run = tmp_path / "run"
    run_vae_train([*TINY, "trainer.epochs=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    proc = run_vae_train(
        [f"trainer.resume={run}", "trainer.epochs=2", "optim.lr=30", *extra], cwd=tmp_path, check=False
    )
    return run, proc


def test_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    run, proc = _healthy_then_diverging(tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "NaN/Inf" in proc.stderr and "optim.lr=3" in proc.stderr and "Traceback" not in proc.stderr
    step = int(proc.stderr.split(" at step ")[1].split()[0])
    assert step > 8  # in epoch 2, after the healthy epoch's 8 steps
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 8
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
    assert str(run / "checkpoints" / "last.pt") in proc.stderr


def test_nan_rollback_lowers_the_learning_rate_and_finishes(tmp_path):
    run, proc = _healthy_then_diverging(tmp_path, "trainer.nan_policy=rollback", "trainer.rollback_lr_factor=0.0001")
    assert proc.returncode == 0, proc.stderr
    assert "rolled back to step 8" in proc.stdout + proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["steps"] == 16
    assert all(abs(metrics[k]) < 1e4 for k in ("test/elbo", "val/elbo"))
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["train_state"]["rollbacks"] == 1
    assert ckpt["scheduler"]["base_lrs"] == [pytest.approx(30 * 0.0001)]


def test_learning_rate_given_on_resume_takes_effect(tmp_path):
    run = tmp_path / "run"
    run_vae_train([*TINY, "trainer.epochs=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    run_vae_train([f"trainer.resume={run}", "trainer.epochs=2", "optim.lr=0.0005"], cwd=tmp_path)
    lrs = [e.value for e in load_events(run).Scalars("train/lr")]
    assert lrs == [pytest.approx(1e-3), pytest.approx(5e-4)]


def test_nan_skip_gives_up_after_too_many_bad_batches_in_a_row(tmp_path):
    args = [*TINY, "optim.lr=1e8", "trainer.nan_policy=skip", "trainer.max_nan_skips=3"]
    proc = run_vae_train(args, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert (proc.stdout + proc.stderr).count("skipped batch") == 2
    assert "NaN/Inf" in proc.stderr


def _without_root_override(cmd: list[str]) -> list[str]:
    """Root ignores permission bits; drop that capability (util-linux setpriv) so a read-only folder binds."""
    if os.geteuid() != 0:
        return cmd
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--", *cmd]


def test_read_only_output_folder_is_a_clear_error(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="vae-ro-"))
    try:
        os.chmod(base, 0o555)  # r-x for everybody
        proc = subprocess.run(
            _without_root_override([vae_train_executable(), *TINY]),
            cwd=base,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert f"Cannot write run directories under {base / 'outputs'}" in proc.stderr
        assert "hydra.run.dir=" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        os.chmod(base, 0o755)
        shutil.rmtree(base)


def _file_size_limit(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    run = tmp_path / "run"
    run_vae_train([*TINY, "trainer.epochs=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    size = len(before)
    proc = subprocess.run(
        [vae_train_executable(), f"trainer.resume={run}", "trainer.epochs=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_file_size_limit(size // 2),  # no file can grow past half a checkpoint
    )
    assert proc.returncode == 2, proc.stderr
    assert "Could not write checkpoint" in proc.stderr and "previous checkpoint there is intact" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert not list((run / "checkpoints").glob(".*.tmp"))


def test_same_seed_gives_bit_identical_metrics_and_weights(tmp_path):
    runs = []
    for name in ("a", "b"):
        run_vae_train([*TINY, f"hydra.run.dir={tmp_path / name}"], cwd=tmp_path)
        runs.append(tmp_path / name)
    _assert_same_weights(*runs)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in runs)
    for k in ("wall_time_s", "images_per_sec"):
        ma.pop(k), mb.pop(k)
    # The checkpoints' digests cover the files whole (the run's own directory and times are in them); what they
    # were saved at is the same.
    for name in ("best", "last"):
        assert ma["checkpoints"][name].pop("digest") != "" and mb["checkpoints"][name].pop("digest") != ""
    assert ma == mb


def test_strict_deterministic_mode_runs(tmp_path):
    run_vae_train([*TINY, "trainer.epochs=1", "trainer.deterministic=true"], cwd=tmp_path)


def test_malicious_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": Payload(), "optimizer": {}, "epoch": 0, "step": 0, "config": {}}, evil)
    proc = run_vae_train([*TINY, f"trainer.resume={evil}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Refused to load" in proc.stderr and "Nothing from it was executed" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "wrong_architecture", "not_a_checkpoint", "newer_format"])
def test_damaged_checkpoints_give_a_clear_error(tmp_path, damage):
    """Both checkpoints damaged alike: one clear error. (One damaged: the resume falls back to the other one,
    tests/e2e/test_hostile.py.)"""
    from vae_cli.training.checkpoint import save_checkpoint

    run = tmp_path / "run"
    run_vae_train([*TINY, "trainer.epochs=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    expected = {
        "truncate": "truncated or corrupt",
        "wrong_architecture": "do not fit the model",
        "not_a_checkpoint": "not a vae-cli checkpoint",
        "newer_format": "Upgrade vae-cli",
    }[damage]
    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        state = torch.load(path, weights_only=True)
        if damage == "truncate":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        elif damage == "wrong_architecture":  # a consistent file (fresh digest) whose config lies about the weights
            state["config"]["model"]["hidden_dims"] = [32]
            save_checkpoint({k: v for k, v in state.items() if k != "integrity"}, path)
        elif damage == "not_a_checkpoint":
            torch.save({"weights": state["model"]}, path)
        else:
            state["format_version"] = 99
            torch.save(state, path)
    proc = run_vae_train([f"trainer.resume={run}", "trainer.epochs=2"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "override, expected",
    [
        ("trainer.epochs=0", "trainer.epochs must be >= 1"),
        ("optim.lr=0", "optim.lr must be > 0"),
        ("loss.beta=-1", "loss.beta must be >= 0"),
        ("model.latent_dim=0", "model.latent_dim must be >= 1"),
        ("trainer.batch_size=100000", "trainer.batch_size=100000 is larger than the training set"),
        ("model=conv model.conv_channels=[8,8,8]", "divisible by 8"),
        ("dataset=imagenet", "Valid options for dataset: "),
        ("model=transformer", "Valid options for model: "),
        ("model.lattent_dim=3", "Did you mean 'latent_dim'?"),
        ("trainer.epochs=ten", "trainer.epochs must be an integer"),
        ("likelihood.name=poisson", "must be one of bernoulli, continuous_bernoulli, gaussian, logistic_mixture"),
        ("loss.likelihood=gaussian", "loss.likelihood has moved: use likelihood="),
        ("loss.k=5", "loss.k is a key of loss=iwae"),
        ("loss=iwae loss.kk=5", "Did you mean 'k'?"),
        ("optim.weight_decay=0.1", "use optim=adamw"),
        ("trainer.device=tpu", "must be one of auto, cpu, cuda, mps"),
        # The keys of watching a run (README "Watching a run").
        ("trainer.progress_every_s=0", "trainer.progress_every_s must be > 0"),
        ("trainer.nll_iw_images=0", "trainer.nll_iw_images must be >= 1 or null"),
        ("dataset.eval_subset=0", "dataset.eval_subset must be >= 1 or null"),
        ("trainer.early_stop_patience=-1", "trainer.early_stop_patience must be >= 0"),
        ("trainer.early_stop_min_delta=-0.5", "trainer.early_stop_min_delta must be >= 0"),
        ("trainer.early_stop_patience=2 trainer.sweep_metric=test/loss", "computed once, after the last epoch"),
        ("trainer.quick_check=maybe", "trainer.quick_check"),
        ("logger=[mlflow,nope]", "Unknown logger 'nope'. Valid options for logger: mlflow, tensorboard, wandb."),
        ("logger=wandb logger.wandb.mode=sometimes", "logger.wandb.mode must be offline or online"),
        ("logger.mlflow.experment=x", "Did you mean 'experiment'?"),
    ],
)
def test_bad_config_exits_before_loading_data_with_one_message(tmp_path, override, expected):
    # TINY's model.hidden_dims is a key of the MLP alone (another architecture would be refused for it first).
    base = [a for a in TINY if not a.startswith("model.hidden_dims")] if "model=conv" in override else TINY
    proc = run_vae_train([*base, *override.split()], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "data synthetic" not in proc.stdout + proc.stderr
    assert not list((tmp_path / "outputs").glob("*/*/checkpoints"))
