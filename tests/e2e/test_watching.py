"""Watching a run (issue: a trainer people enjoy): log lines a person reads, progress that is never silent for
long, the per-epoch history files, the IW estimate sized to the run, quick checks, held-out subsets and early
stopping. Everything through the real commands; numbers checked against the checkpoints and event files."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, run_tool, run_vae_train, vae_train_executable
from tests.e2e.events import load_events, scalar_values
from vae_cli.training.latent_monitor import IW_BUDGET, IW_LEAST_IMAGES

STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_console_lines_are_short_and_say_the_run_directory_and_the_parameter_count_first(tmp_path):
    run = tmp_path / "run"
    proc = run_vae_train([*TINY, "loss=beta_tcvae", f"hydra.run.dir={run}"], cwd=tmp_path)
    lines = _lines(proc.stdout)
    assert lines and all(STAMP.match(line) for line in lines), lines  # [HH:MM:SS] message, nothing more
    assert lines[0].endswith(f"run directory {run}")
    weights = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    count = sum(t.numel() for t in weights.values())  # the MLP has no buffers: every tensor is a parameter
    assert any(f"model mlp (latent 4): {count:,} parameters; loss beta_tcvae" in line for line in lines[:4]), lines
    # One line per epoch with the loss and every term the objective reports (beta-TCVAE's decomposition).
    epoch_line = next(line for line in lines if " epoch 2/2  train loss " in line)
    for term in ("recon", "kl", "mi", "tc", "dwkl"):
        assert re.search(rf"train loss [-0-9.]+ \(.*\b{term} [-0-9.e]+", epoch_line), (term, epoch_line)
    assert "| val loss " in epoch_line and "img/s" in epoch_line
    # Development detail stays out of the console, in the run's log file (with date, level and module).
    log = (run / "vae-train.log").read_text()
    assert "first optimizer step done" not in proc.stdout and "mallopt" not in proc.stdout
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ DEBUG vae_cli\S*: first optimizer step done", log, re.M)
    assert re.search(r"^\S+ \S+ INFO vae_cli.training.trainer: epoch 2/2  train loss", log, re.M)


def test_history_files_hold_every_epoch_once_across_a_resume(tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "trainer.epochs=3", f"hydra.run.dir={run}"]
    run_vae_train(args, cwd=tmp_path)
    first = (run / "history.jsonl").read_text()
    # Resumed for two more epochs: the files go on, no epoch twice, none missing.
    run_vae_train([f"trainer.resume={run}", "trainer.epochs=5"], cwd=tmp_path)
    records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert (run / "history.jsonl").read_text().startswith(first)
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    # The same numbers as TensorBoard's event files and the checkpoint's history.
    events = load_events(run)
    assert [r["val/loss"] for r in records] == pytest.approx(scalar_values(events, "val/loss"), rel=1e-6)
    assert [float(r["val/loss"]) for r in rows] == pytest.approx([r["val/loss"] for r in records], rel=1e-12)
    kept = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["train_state"]["history"]
    assert [r["train/loss"] for r in records] == [h["train/loss"] for h in kept]


def test_the_iw_estimate_is_sized_to_the_training_it_follows_and_says_on_what(tmp_path):
    run = tmp_path / "run"
    # 912 - 400 = 512 training images: an estimate every 5 epochs with K=1 may cost a tenth of 5 x 512 training
    # images, 256 images' worth (an IW sample costs about a training image); never fewer than IW_LEAST_IMAGES,
    # never more than the split's 400.
    args = [*TINY, "dataset.num_train=912", "dataset.val_size=400", "trainer.nll_iw_every_epochs=5"]
    args += ["trainer.nll_iw_k=1"]
    proc = run_vae_train([*args, f"hydra.run.dir={run}"], cwd=tmp_path)
    expected = min(400, max(IW_LEAST_IMAGES, math.ceil(IW_BUDGET * 512 * 5 / 1)))
    assert expected == 256
    assert "val/nll_iw (K=1, first 256 of 400 val images)" in proc.stdout, proc.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["nll_iw_k"] == 1 and metrics["nll_iw_images"] == 256
    # Asked for: every validation image.
    whole = tmp_path / "whole"
    run_vae_train([*args, "trainer.nll_iw_images=100000", f"hydra.run.dir={whole}"], cwd=tmp_path)
    assert json.loads((whole / "metrics.json").read_text())["nll_iw_images"] == 400


def test_quick_check_runs_every_phase_on_a_few_images_and_resumes(tmp_path):
    run = tmp_path / "run"
    proc = run_vae_train(["dataset=synthetic", "trainer.quick_check=true", f"hydra.run.dir={run}"], cwd=tmp_path)
    assert "quick check: 1 epoch of at most 5 steps" in proc.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["steps"] == 5
    assert metrics["val_images"] == 256 and metrics["test_images"] == 256 and metrics["nll_iw_images"] == 64
    assert {"best.pt", "last.pt"} <= {p.name for p in (run / "checkpoints").iterdir()}
    assert math.isfinite(metrics["test/loss"]) and math.isfinite(metrics["val/nll_iw"])
    assert list(run.glob("events.out.tfevents.*")) and (run / "history.csv").is_file()
    # The config records the sizes used, so the run goes on like any other.
    run_vae_train([f"trainer.resume={run}", "trainer.epochs=2"], cwd=tmp_path)
    assert json.loads((run / "metrics.json").read_text())["steps"] == 10


def test_eval_subset_shrinks_validation_and_test_and_vae_eval_still_reads_whole_splits(tmp_path):
    run = tmp_path / "run"
    run_vae_train([*TINY, "dataset.eval_subset=50", f"hydra.run.dir={run}"], cwd=tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_images"] == 50 and metrics["test_images"] == 50
    proc = run_tool("vae-eval", [str(run), "--k", "2", "--no-write"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "128" in proc.stdout  # the whole test split: dataset.num_test=128
    assert "test split: 128 images, K=2" in proc.stdout, proc.stdout


def test_early_stopping_ends_the_run_as_finished_and_a_resume_says_so(tmp_path):
    run = tmp_path / "run"
    # An improvement must exceed 1e9 nats: none does, so the run stops after 2 epochs without one.
    args = [*TINY, "trainer.epochs=6", "trainer.early_stop_patience=2", "trainer.early_stop_min_delta=1e9"]
    proc = run_vae_train([*args, f"hydra.run.dir={run}"], cwd=tmp_path)
    assert "early stop after epoch 3: val/loss has not improved on" in proc.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["stopped_early_at"] == 3 and math.isfinite(metrics["test/loss"])
    assert json.loads((run / "run.json").read_text())["state"] == "finished"
    again = run_vae_train([f"trainer.resume={run}"], cwd=tmp_path)
    assert "stopped early at epoch 3" in again.stdout and "nothing to do" in again.stdout
    # A larger patience goes on from where it stopped.
    run_vae_train([f"trainer.resume={run}", "trainer.early_stop_patience=3"], cwd=tmp_path)
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 4


def test_a_log_file_is_never_silent_for_long_through_every_phase(tmp_path):
    """Output not on a terminal (a log file, a batch job): with trainer.progress_every_s=0.2, lines keep coming
    through training, validation, the IW estimate and the test split, each phase a second or more."""
    run = tmp_path / "run"
    args = [
        "dataset=synthetic",
        "dataset.num_train=10240",
        "dataset.val_size=8192",
        "dataset.num_test=6144",
        "model=conv",
        "trainer.epochs=1",
        "trainer.batch_size=32",
        "trainer.eval_batch_size=64",
        "trainer.nll_iw_images=768",
        "trainer.progress_every_s=0.2",
        f"hydra.run.dir={run}",
    ]
    proc = subprocess.Popen(
        [vae_train_executable(), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    arrivals: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            arrivals.append((time.monotonic(), line.rstrip()))

    reader = threading.Thread(target=read)
    reader.start()
    assert proc.wait(timeout=600) == 0
    reader.join()
    text = "\n".join(line for _, line in arrivals)
    for phase in ("epoch 1/1: ", "epoch 1/1: validation: ", "epoch 1: val/nll_iw K=16: ", "test split: "):
        assert re.search(rf"\] {re.escape(phase)}\d+/\d+ batches \(\d+%\)", text), (phase, text)
    assert re.search(r"epoch 1/1: \d+/\d+ batches \(\d+%\), loss [0-9.]+, [0-9.]+ batches/s, about", text)
    start = next(t for t, line in arrivals if "run directory" in line)
    end = arrivals[-1][0]
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(arrivals) if a >= start]
    assert end - start > 2 and max(gaps) < 3, (max(gaps), end - start, text)


def test_vae_eval_says_how_long_it_will_take_and_how_to_shorten_it(tmp_path):
    run = tmp_path / "run"
    run_vae_train([*TINY, f"hydra.run.dir={run}"], cwd=tmp_path)
    exe = Path(vae_train_executable()).parent / "vae-eval"
    proc = subprocess.run(
        [str(exe), str(run), "--k", "4000", "--no-write"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "VAE_CLI_PROGRESS_EVERY_S": "0.5"},
    )
    assert proc.returncode == 0, proc.stderr
    said = re.search(r"vae-eval: K=4000 over 128 images will take about ([0-9.]+ s|\d+ min \d+ s)", proc.stderr)
    assert said, proc.stderr
    assert re.search(r"vae-eval test K=4000: \d+/\d+ batches", proc.stderr)  # progress lines, off a terminal
    assert "Traceback" not in proc.stderr
