"""Sweeps on real engines, through the real `vae-train -m`: joblib in parallel, Optuna with a resumable study, a
real SLURM cluster (scripts/local-slurm.sh; CI starts it), jobs that fail or are killed, and sweeps run again.

The SLURM tests need a running cluster: they skip without one, except where VAE_CLI_REQUIRE_SLURM=1 (CI), where
a missing cluster fails them. Every test that waits on SLURM has its own timeout.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY, run_vae_train, vae_train_executable
from tests.e2e.test_hostile import tree_hash

ONE_EPOCH = [*TINY, "trainer.epochs=1", "trainer.nll_iw_every_epochs=0", "trainer.embedding=false"]


def summary_rows(sweep: Path) -> dict[int, dict[str, str]]:
    return {int(r["job"]): r for r in csv.DictReader((sweep / "summary.csv").open())}


def test_joblib_runs_jobs_in_parallel_with_the_cores_divided(tmp_path):
    sweep = tmp_path / "sweep"
    run_vae_train(
        [
            "-m",
            *ONE_EPOCH,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "loss.beta=1,2",
            # Jobs of several seconds: long beside a worker's start, so both run at once even on a loaded machine.
            "dataset.num_train=4000",
            "trainer.epochs=12",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    rows = summary_rows(sweep)
    assert [rows[j]["status"] for j in (0, 1)] == ["ok", "ok"]
    spans = []
    for job in ("0", "1"):
        log = (sweep / job / "vae-train.log").read_text()
        assert f"threads: 1 (of {os.cpu_count()} cores)" in log or os.cpu_count() == 1
        status = json.loads((sweep / job / "run.json").read_text())
        spans.append((datetime.fromisoformat(status["started"]), datetime.fromisoformat(status["updated"])))
        assert status["pid"] != os.getpid()  # in a worker process
    (a0, a1), (b0, b1) = spans
    assert a0 <= b1 and b0 <= a1, spans  # the two jobs overlapped in time (run.json has whole seconds): at once


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_vae_train(
        ["-m", *ONE_EPOCH, "trainer.batch_size=64,100000", "loss.beta=1", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "1 job(s) of the sweep did not finish" in proc.stderr and "Traceback" not in proc.stderr
    rows = summary_rows(sweep)
    assert rows[0]["status"] == "ok" and rows[0]["best"] == "yes"
    assert rows[1]["status"] == "failed" and "larger than the training set" in rows[1]["reason"]
    assert json.loads((sweep / "1" / "run.json").read_text())["state"] == "failed"


def _optuna(tmp_path: Path, sweep: Path, n_trials: int, extra: list[str] | None = None) -> subprocess.CompletedProcess:
    return run_vae_train(
        [
            "-m",
            *ONE_EPOCH,
            "hydra/sweeper=optuna",
            f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.n_jobs=1",
            "hydra.sweeper.sampler.seed=0",
            "optim.lr=tag(log, interval(1e-4, 1e-2))",
            *(extra or []),
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        check=False,
        timeout=600,
    )


def test_optuna_study_is_stored_in_the_sweep_and_resumed_by_the_same_command(tmp_path):
    import optuna

    sweep = tmp_path / "sweep"
    first = _optuna(tmp_path, sweep, 3)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (sweep / "optuna.db").is_file() and sorted(p.name for p in sweep.glob("[0-9]")) == ["0", "1", "2"]
    kept = {job: tree_hash(sweep / job) for job in ("0", "1", "2")}
    again = _optuna(tmp_path, sweep, 5)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Continuing study vae-train: 3 trials done, 2 to go" in again.stdout + again.stderr
    assert sorted(p.name for p in sweep.glob("[0-9]")) == ["0", "1", "2", "3", "4"]  # new folders, none rewritten
    for job, digest in kept.items():
        after = tree_hash(sweep / job)
        assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in digest.items() if k != ".lock"}
    study = optuna.load_study(study_name="vae-train", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert len(study.trials) == 5 and all(t.state.name == "COMPLETE" for t in study.trials)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    rows = summary_rows(sweep)
    (best_row,) = [r for r in rows.values() if r["best"] == "yes"]
    assert float(best_row["val/loss"]) == pytest.approx(best["best_value"], rel=1e-6)
    assert float(best_row["optim.lr"]) == pytest.approx(best["best_params"]["optim.lr"], rel=1e-6)


def test_a_failed_optuna_trial_is_a_failed_trial_not_a_crash(tmp_path):
    import optuna

    sweep = tmp_path / "sweep"
    proc = _optuna(tmp_path, sweep, 6, ["loss.beta=choice(1.0, -1.0)"])  # beta = -1 is refused: a failed job
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    study = optuna.load_study(study_name="vae-train", storage=f"sqlite:///{sweep / 'optuna.db'}")
    states = {(t.params["loss.beta"], t.state.name) for t in study.trials}
    assert len(study.trials) == 6 and states <= {(1.0, "COMPLETE"), (-1.0, "FAIL")}, states
    assert {s for _, s in states} == {"COMPLETE", "FAIL"}  # both kinds happened (a fixed sampler seed)
    rows = summary_rows(sweep)
    assert {r["status"] for r in rows.values()} == {"ok", "failed"}
    assert proc.returncode == 1 and "did not finish" in proc.stderr


# ----- SLURM -------------------------------------------------------------------------------------------------------
def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mix", "alloc"))


@pytest.fixture
def slurm():
    if not _slurm_up():
        if os.environ.get("VAE_CLI_REQUIRE_SLURM") == "1":
            pytest.fail("a SLURM cluster is required here (scripts/local-slurm.sh start) but none is up")
        pytest.skip("no SLURM cluster (scripts/local-slurm.sh start)")


SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]


def test_a_real_slurm_sweep_runs_one_job_each(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    run_vae_train(["-m", *ONE_EPOCH, *SLURM, "loss.beta=1,2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=300)
    rows = summary_rows(sweep)
    assert [rows[j]["status"] for j in (0, 1)] == ["ok", "ok"]
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # two SLURM array tasks, one per job
    assert all(json.loads((sweep / j / "run.json").read_text())["host"] for j in ("0", "1"))


def test_a_killed_slurm_job_is_recorded_and_the_same_command_resumes_it(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.epochs=40", "trainer.nll_iw_every_epochs=0", *SLURM, "loss.beta=1,2"]
    args.append(f"hydra.sweep.dir={sweep}")
    proc = subprocess.Popen(
        [vae_train_executable(), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    while not (sweep / "0" / "checkpoints" / "last.pt").is_file():
        assert time.time() < deadline and proc.poll() is None, "job 0 never checkpointed"
        time.sleep(0.2)
    job_ids = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30).stdout.split()
    first = sorted(j for j in job_ids if j.endswith("_0"))[0]
    subprocess.run(["scancel", first], check=True, timeout=30)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err.decode()[-3000:]
    rows = summary_rows(sweep)
    assert rows[0]["status"] in ("interrupted", "failed", "killed") and rows[1]["status"] == "ok"
    finished = tree_hash(sweep / "1")
    run_vae_train(args, cwd=tmp_path, timeout=300)
    job_logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.err"))
    assert "finished in an earlier run of this sweep" in job_logs  # job 1 said so, in its own SLURM log
    rows = summary_rows(sweep)
    assert rows[0]["status"] == "ok" and json.loads((sweep / "0" / "metrics.json").read_text())["epochs"] == 40
    assert {k: v for k, v in tree_hash(sweep / "1").items() if k != ".lock"} == {
        k: v for k, v in finished.items() if k != ".lock"
    }


def test_tasks_per_node_make_one_data_parallel_run_under_slurm(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    run_vae_train(
        ["-m", *ONE_EPOCH, *SLURM, "hydra.launcher.tasks_per_node=2", "trainer.epochs=2", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        timeout=300,
    )
    job = sweep / "0"
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["steps"] == 2 * 4  # 8 batches an epoch, halved between the two processes
    assert len(list(job.glob("events.out.tfevents.*"))) == 1  # rank 0 alone writes the run
    log = (job / "vae-train.log").read_text()
    assert "process 0 of 2" in log and "process 1 of 2" not in log


def test_submitits_local_executor_runs_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    run_vae_train(
        ["-m", *ONE_EPOCH, "hydra/launcher=slurm_local", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=300
    )
    assert summary_rows(sweep)[0]["status"] == "ok"
