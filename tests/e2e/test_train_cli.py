"""End to end: the installed `vae-train` in a subprocess, then everything it wrote, read back."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time

import pytest
import torch
import yaml
from PIL import Image
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import DEBIAN_FASHION, TINY, need_path, run_vae_train, single_run_dir, vae_train_executable
from tests.e2e.events import load_events, scalar_steps, scalar_values
from vae_cli.config.catalog import OBJECTIVES
from vae_cli.evaluation import plots


def test_tiny_run_writes_a_complete_run_directory(tmp_path):
    proc = run_vae_train(TINY, cwd=tmp_path)
    run = single_run_dir(tmp_path)
    assert run.parent.parent == tmp_path / "outputs"
    assert "epoch 2/2" in proc.stdout + proc.stderr  # one line per epoch when not on a terminal

    # Hydra's record of the composed config.
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["model"]["latent_dim"] == 4 and config["dataset"]["name"] == "synthetic"

    # metrics.json: final val/test numbers, consistent with each other.
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        recon, kl, elbo = metrics[f"{split}/recon"], metrics[f"{split}/kl"], metrics[f"{split}/elbo"]
        assert math.isfinite(elbo) and kl >= 0 and recon > 0
        assert abs(elbo + recon + kl) < 1e-3 * abs(elbo)
    assert metrics["epochs"] == 2 and metrics["steps"] == 2 * 8 and metrics["wall_time_s"] > 0

    # Checkpoints load with weights_only=True and hold everything a resume needs.
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(run / "checkpoints" / name, weights_only=True)
        for key in ("model", "optimizer", "scheduler", "epoch", "step", "rng", "config", "metrics", "format_version"):
            assert key in ckpt, key
        assert isinstance(ckpt["config"], dict) and ckpt["config"]["model"]["latent_dim"] == 4
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2

    # PNG grids: reconstructions (16 originals + 16 reconstructions, 8 per row, each row named) and 16 samples,
    # 28-pixel images in 58-pixel tiles (scaled 2x, 2 of padding) under a title.
    line = plots.LABEL_FONT_SIZE + 6
    left, _ = plots.label_margins("t", ["reconstruction"], None)
    recon_png = Image.open(run / "images" / "images_reconstructions_epoch002.png")
    assert recon_png.height == line + 4 * 58 + 2 and recon_png.width >= left + 8 * 58 + 2
    samples_png = Image.open(run / "images" / "images_samples_epoch002.png")
    assert samples_png.height == line + 4 * 58 + 2 and samples_png.width >= 4 * 58 + 2

    # TensorBoard: the tags, at sane values.
    acc = load_events(run)
    tags = set(acc.Tags()["scalars"])
    expected = {f"train/{t}" for t in ("loss", "recon", "kl", "elbo")} | {
        f"val/{t}" for t in ("loss", "recon", "kl", "elbo")
    }
    expected |= {"train/lr", "train/images_per_sec", "train/epoch", "test/elbo", "test/loss"}
    assert expected <= tags, expected - tags
    # Nothing outside train/, val/, test/: TensorBoard sorts card groups by name, and the loss curves come first.
    assert {t.split("/")[0] for t in tags} == {"train", "val", "test"}, tags
    assert all(abs(v - 1e-3) < 1e-9 for v in scalar_values(acc, "train/lr"))
    assert all(v > 0 for v in scalar_values(acc, "train/images_per_sec"))
    train_loss = scalar_values(acc, "train/loss")
    assert len(train_loss) == 8 and train_loss[-1] < train_loss[0]  # it learns
    assert scalar_steps(acc, "val/elbo") == [8, 16]
    assert (
        scalar_values(acc, "val/elbo")[-1] == metrics["val/elbo"]
        or abs(scalar_values(acc, "val/elbo")[-1] - metrics["val/elbo"]) < 1e-3
    )
    assert set(acc.Tags()["images"]) == {
        "images/reconstructions",
        "images/samples",
        "latent/traversals",
        "latent/scatter",
    }
    assert len(acc.Images("images/samples")) == 2
    # hparams written into this run (no sub-run directory), with the final metrics; the only extra folder is the
    # embedding projector's data (00016/, no event file in it).
    assert [p for p in run.iterdir() if p.is_dir() and p.name not in (".hydra", "checkpoints", "images")] == [
        run / "00016"
    ]
    assert not list((run / "00016").rglob("events.out.tfevents.*"))
    hparams = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["model.latent_dim"].number_value == 4
    assert start.session_start_info.hparams["dataset.name"].string_value == "synthetic"
    # No experiment summary: TensorBoard makes HPARAMS' columns from every run's values (test_tensorboard_server).
    assert "_hparams_/experiment" not in hparams
    assert scalar_values(acc, "test/elbo") == [pytest.approx(metrics["test/elbo"], rel=1e-6)]
    # The keys this command line set, and the headline keys: not the whole config.
    assert set(start.session_start_info.hparams) <= {
        "dataset.name",
        "model.arch",
        "model.latent_dim",
        "likelihood.name",
        "prior.name",
        "loss.name",
        *(o.split("=")[0] for o in TINY),
    }


def test_progress_bar_on_a_terminal(tmp_path):
    import fcntl
    import pty
    import select
    import struct
    import termios

    leader, follower = pty.openpty()
    # A real terminal has a size; tqdm draws nothing in a 0-column one.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        # An epoch of a few hundred steps, so the bar is drawn again after it has a running loss to show.
        [vae_train_executable(), *TINY, "trainer.epochs=1", "dataset.num_train=9600", "trainer.batch_size=32"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    chunks = []
    deadline = time.time() + 300
    while time.time() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunks.append(os.read(leader, 65536))  # keep the pty drained so the child never blocks
                continue
            except OSError:  # EIO: nothing to read right now
                pass
        if proc.poll() is not None:
            break
    os.close(follower)
    os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    # tqdm's bar, only because stderr is a terminal, with the running loss; then validation's and the test split's.
    assert "epoch 1/1:" in text and "batch/s" in text and re.search(r"batch/s, loss [0-9.]+\]", text), text
    assert "epoch 1/1: validation:" in text and "test split:" in text
    # Log lines go above the bar, each at the start of a line of its own (never after a bar's text).
    for line in ("epoch 1/1  train loss", "test split: 128 images", "done: test loss"):
        assert re.search(r"(^|[\r\n])\[\d\d:\d\d:\d\d\] " + re.escape(line), text), line


def test_cfg_job_prints_the_composed_config(tmp_path):
    proc = run_vae_train(["--cfg", "job", "model=conv", "loss.beta=4"], cwd=tmp_path)
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["arch"] == "conv" and cfg["loss"]["beta"] == 4.0
    assert not (tmp_path / "outputs").exists()


def test_help_lists_the_config_groups_without_importing_torch(tmp_path):
    proc = run_vae_train(["--help"], cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    # Each group with its options, this command line's marked; no schema offered as an option. A long list wraps
    # at the terminal's width onto indented lines: joined back here.
    groups = re.sub(r"\n {13,}", " ", proc.stdout)
    assert re.search(r"^  model +conv, hvae, mlp\*, resnet, vqvae$", groups, re.M), proc.stdout
    # Every objective of the catalog, sorted, this command line's (elbo) marked.
    loss_options = ", ".join(re.escape(n + ("*" if n == "elbo" else "")) for n in sorted(OBJECTIVES.names()))
    assert re.search(rf"^  loss +{loss_options}$", groups, re.M), proc.stdout
    assert re.search(r"^  posterior +gaussian\*, iaf, planar, radial, vmf, wrapped_normal$", groups, re.M)
    assert "_schema" not in proc.stdout and "vae_cli_schemas" not in proc.stdout
    # Each key with its type, value and the one-line description its schema's comment gives.
    for key, typed, said in (
        ("epochs", "int = 10", "Training epochs (passes over the training split)."),
        ("device", "auto|cpu|cuda|mps = auto", "Where to train:"),
        ("grad_clip", "float | None = null", "Clip the global grad norm to this value; null = no clipping."),
        ("hidden_dims", "list[int] = [400]", "Widths of the hidden layers"),
        ("mig.num_bins", "int = 20", "Histogram bins per code dimension"),
    ):
        assert re.search(rf"^  {re.escape(key)} +{re.escape(typed)}\n +{re.escape(said)}", proc.stdout, re.M), key
    # Help trains nothing: importing torch (the background preload of a run) would only delay its exit by seconds.
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "vae_cli.commands.train" in imported and not [m for m in imported if m.split(".")[0] == "torch"]


def test_help_shows_the_keys_of_the_options_the_command_line_picks(tmp_path):
    proc = run_vae_train(["loss=iwae", "model=conv", "loss.k=7", "--help"], cwd=tmp_path)
    assert re.search(r"^loss \(loss=iwae\)$", proc.stdout, re.M) and re.search(
        r"^model \(model=conv\)$", proc.stdout, re.M
    )
    assert re.search(r"^  k +int = 7\n +Importance samples per image", proc.stdout, re.M)
    assert re.search(r"^  conv_channels +list\[int\] = \[32, 64\]", proc.stdout, re.M)
    assert "hidden_dims" not in proc.stdout  # the MLP's key: not this config's


def test_shell_completion_offers_options_not_schemas(tmp_path):
    for line, expected in (
        ("vae-train loss=", " ".join(f"loss={n}" for n in sorted(OBJECTIVES.names()))),
        (
            "vae-train posterior=",
            "posterior=gaussian posterior=iaf posterior=planar posterior=radial posterior=vmf posterior=wrapped_normal",
        ),
        ("vae-train model=", "model=conv model=hvae model=mlp model=resnet model=vqvae"),
    ):
        proc = run_vae_train(["-sc", "query=bash"], cwd=tmp_path, env={"COMP_LINE": line})
        assert proc.stdout.split() == expected.split(), proc.stdout
    top = run_vae_train(["-sc", "query=bash"], cwd=tmp_path, env={"COMP_LINE": "vae-train "}).stdout.split()
    assert {"loss=", "model=", "prior=", "posterior=", "likelihood=", "dataset=", "trainer."} <= set(top), top


def test_misspelt_key_fails_fast_naming_it(tmp_path):
    proc = run_vae_train([*TINY, "model.lattent_dim=3"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "lattent_dim" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_impossible_values_fail_before_any_data_is_loaded(tmp_path):
    proc = run_vae_train([*TINY, "trainer.epochs=0", "optim.lr=0"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "trainer.epochs must be >= 1" in proc.stderr and "optim.lr must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr and "data synthetic" not in proc.stdout + proc.stderr


def test_missing_dataset_is_one_clear_paragraph(tmp_path):
    proc = run_vae_train(["dataset=mnist", f"dataset.root={tmp_path / 'none'}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "Dataset 'mnist' was not found" in proc.stderr and "dataset.download=true" in proc.stderr
    assert "Traceback" not in proc.stderr


def _final_weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_killed_run_resumes_to_the_same_weights_with_no_duplicated_steps(tmp_path):
    args = [*TINY, "trainer.epochs=6", "dataset.num_train=2048", "trainer.log_every_steps=3"]
    straight = tmp_path / "straight"
    straight.mkdir()
    run_vae_train([*args, f"hydra.run.dir={straight / 'run'}"], cwd=straight)

    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    run = interrupted / "run"
    proc = subprocess.Popen(
        [vae_train_executable(), *args, f"hydra.run.dir={run}"],
        cwd=interrupted,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.01)
    time.sleep(0.3)  # into the next epoch: the events then hold steps the checkpoint does not
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert killed_at["epoch"] < 6, "the run finished before it was killed; the test proves nothing"

    run_vae_train([f"trainer.resume={run}"], cwd=interrupted)

    a, b = _final_weights(straight / "run"), _final_weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (
        json.loads((run / "metrics.json").read_text())["test/elbo"]
        == json.loads((straight / "run" / "metrics.json").read_text())["test/elbo"]
    )

    acc = load_events(run)
    for tag in ("train/loss", "val/elbo", "train/lr"):
        steps = scalar_steps(acc, tag)
        assert steps == sorted(set(steps)), f"{tag} has duplicated or unordered steps: {steps}"
    assert scalar_steps(acc, "val/elbo") == scalar_steps(load_events(straight / "run"), "val/elbo")
    # The resume kept the original Hydra record and added its own.
    assert (run / ".hydra" / "config.yaml").is_file()
    assert list((run / ".hydra").glob("resume-*/config.yaml"))


def test_resume_can_extend_training_and_refuses_a_different_dataset(tmp_path):
    run = tmp_path / "run"
    run_vae_train([*TINY, f"hydra.run.dir={run}"], cwd=tmp_path)
    run_vae_train([f"trainer.resume={run / 'checkpoints' / 'last.pt'}", "trainer.epochs=3"], cwd=tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["steps"] == 3 * 8
    proc = run_vae_train([f"trainer.resume={run}", "dataset=mnist"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Cannot change the config group 'dataset'" in proc.stderr


def test_resume_from_a_missing_path_is_a_clear_error(tmp_path):
    proc = run_vae_train([*TINY, f"trainer.resume={tmp_path / 'nope'}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_multirun_sweep_makes_one_directory_per_run_and_a_summary(tmp_path):
    proc = run_vae_train(["-m", *TINY, "trainer.epochs=1", "model.latent_dim=2,4", "loss.beta=1,4"], cwd=tmp_path)
    sweeps = list((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1
    sweep = sweeps[0]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    for job in jobs:
        assert (sweep / job / "metrics.json").is_file() and (sweep / job / "checkpoints" / "last.pt").is_file()
        assert list((sweep / job).glob("events.out.tfevents.*"))
    rows = (sweep / "summary.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and rows[0].startswith("job,model.latent_dim,loss.beta,val/loss,val/elbo")
    assert rows[0].endswith(",status,best,overrides") and sum(r.count(",ok,") for r in rows) == 4
    md = (sweep / "summary.md").read_text().splitlines()
    assert md[0].startswith("| job | model.latent_dim | loss.beta | val/loss | val/elbo")
    assert md[5].startswith("| 3 | 4 | 4 | ")
    assert "summary" in proc.stdout + proc.stderr


def test_real_fashion_mnist_trains_through_the_cli(tmp_path):
    need_path(DEBIAN_FASHION / "train-images-idx3-ubyte.gz", "Debian's dataset-fashion-mnist")
    run_vae_train(
        ["dataset=fashion_mnist", "dataset.subset=6000", "trainer.epochs=1", f"dataset.root={tmp_path / 'data'}"],
        cwd=tmp_path,
    )
    metrics = json.loads((single_run_dir(tmp_path) / "metrics.json").read_text())
    # One epoch on 6k real images: well below the ~550 nats of an untrained model, far from converged.
    assert 240 < -metrics["test/elbo"] < 400
    assert metrics["dataset"] == "fashion_mnist"


def test_two_runs_in_the_same_second_get_distinct_directories(tmp_path):
    env = {"VAE_CLI_TEST": "1"}
    procs = [
        subprocess.Popen(
            [vae_train_executable(), *TINY, "trainer.epochs=1"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0
    runs = sorted(p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir())
    assert len(runs) == 2
    assert all((r / "metrics.json").is_file() for r in runs)
