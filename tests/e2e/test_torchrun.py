"""vae-train under torchrun (DDP on CPU with gloo): one run directory, sharded epochs, agreed stops, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TINY, single_run_dir, vae_train_executable
from tests.e2e.events import load_events
from vae_cli.training.checkpoint import load_checkpoint


def torchrun(args: list[str], cwd: Path, scratch: Path, **kw) -> subprocess.Popen:
    scratch.mkdir(exist_ok=True)
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2"]
    return subprocess.Popen(
        [*cmd, vae_train_executable(), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # TMPDIR: where the other ranks' scratch directories go, so the test can see they are removed.
        env={**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)},
        **kw,
    )


def test_two_processes_train_one_run_on_halves_of_each_epoch(tmp_path):
    proc = torchrun(TINY, tmp_path, tmp_path / "scratch")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    run = single_run_dir(tmp_path)  # rank 1 made no run directory of its own
    metrics = json.loads((run / "metrics.json").read_text())
    # 512 training images: 256 per rank, batch 64 -> 4 steps an epoch (8 alone), 2 epochs.
    assert metrics["steps"] == 8 and metrics["epochs"] == 2
    assert all(abs(metrics[k]) < 1e4 for k in ("test/loss", "val/loss", "train/loss"))
    log = (run / "vae-train.log").read_text()
    assert "process 0 of 2 (torchrun)" in log
    assert [e.step for e in load_events(run).Scalars("train/loss")] == [2, 4, 6, 8]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # only rank 0 writes TensorBoard
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 8 and not any(k.startswith("module.") for k in ckpt["model"])
    assert not list((tmp_path / "scratch").glob("vae-train-rank*"))  # rank 1's scratch directory is gone


def test_a_sweep_under_torchrun_is_refused_with_the_way_out(tmp_path):
    proc = torchrun(["-m", *TINY, "model.latent_dim=2,4"], tmp_path, tmp_path / "scratch")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "-m/--multirun cannot run under torchrun" in err and "Traceback" not in err.split("torchrun")[0]
    assert not (tmp_path / "outputs" / "multirun").exists()


def test_ctrl_c_stops_both_ranks_at_one_step_and_torchrun_resumes_the_run(tmp_path):
    run = tmp_path / "run"
    longer = [*TINY, "dataset.num_train=1280", "trainer.epochs=40", f"hydra.run.dir={run}"]
    proc = torchrun(longer, tmp_path, tmp_path / "scratch", start_new_session=True)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.time() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0  # torchrun itself ends with its own SignalException
    # Both ranks stopped at the same step (they agree every step); rank 0 names the run, rank 1 no scratch path.
    assert f"$(which vae-train) trainer.resume={run}" in err and "torchrun --nproc_per_node=2" in err
    assert "process 1 of 2 stopped together with rank 0" in err and "vae-train-rank1" not in err
    stopped = load_checkpoint(run / "checkpoints" / "last.pt")
    assert 0 < stopped["step"] < 40 * 9  # 1152 images: 576 per rank, 9 steps an epoch
    resumed = torchrun([f"trainer.resume={run}"], tmp_path, tmp_path / "scratch")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    final = load_checkpoint(run / "checkpoints" / "last.pt")
    assert final["step"] == 40 * 9 and final["epoch"] == 40
    assert json.loads((run / "metrics.json").read_text())["steps"] == 40 * 9


def test_a_nan_on_the_ranks_ends_them_together_without_a_hang(tmp_path):
    args = [*TINY, "optim.lr=1e8", "trainer.nan_policy=skip", "trainer.max_nan_skips=3"]
    proc = torchrun(args, tmp_path, tmp_path / "scratch")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert (out + err).count("skipped batch") == 2  # rank 0's log only; rank 1 logs nothing
    assert "NaN/Inf" in err and "process 1 of 2 stopped together with rank 0" in err
