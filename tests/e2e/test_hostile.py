"""A hostile user: every kind of bad input and fault that once lost a run or ended in a traceback, each through the
real commands. Each case asserts the exit status, the message, the absence of a traceback, and that nothing the
user already had changed (the run directory is hashed before and after).

``KINDS`` counts the kinds tried; every test below is one kind (parametrized ones, one per parameter).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY, run_vae_train, vae_train_executable

# A run long enough (4 epochs of 18 batches) that signals land where they are aimed.
LONGER = [*TINY, "trainer.epochs=4", "dataset.num_train=1280"]


def tree_hash(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256 of its bytes), links included as their targets."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "?"
    return out


def tool(
    name: str, args: list[str], cwd: Path, timeout: float = 300, unprivileged: bool = False, **kw
) -> subprocess.CompletedProcess:
    cmd = [str(Path(vae_train_executable()).parent / name), *args]
    if unprivileged and os.geteuid() == 0:
        # Root ignores permission bits; drop that capability (util-linux setpriv) so a read-only folder binds.
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--", *cmd]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def start(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [vae_train_executable(), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def wait_for(predicate, proc: subprocess.Popen | None, timeout: float = 120, what: str = "") -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended before {what}:\n{proc.stderr.read() if proc.stderr else ''}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def clean_failure(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text[-3000:]}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("finished")
    run_vae_train([*TINY, f"hydra.run.dir={cwd / 'run'}"], cwd=cwd)
    return cwd / "run"


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of a finished run (each test may damage its own)."""
    dest = tmp_path / "run"
    shutil.copytree(finished_run, dest, symlinks=True)
    return dest


# ----- overwrites --------------------------------------------------------------------------------------------------
def test_a_new_run_into_a_finished_run_is_refused_with_the_choices(run_copy, tmp_path):
    before = tree_hash(run_copy)
    proc = run_vae_train([*TINY, f"hydra.run.dir={run_copy}"], cwd=tmp_path, check=False)
    clean_failure(proc, 2, "already holds a finished vae-train run", "trainer.resume=", "trainer.overwrite=true")
    assert tree_hash(run_copy) == before


def test_overwrite_moves_the_old_run_aside_whole(run_copy, tmp_path):
    before = tree_hash(run_copy)
    before.pop(".lock", None)
    run_vae_train([*TINY, "trainer.epochs=1", f"hydra.run.dir={run_copy}", "trainer.overwrite=true"], cwd=tmp_path)
    (aside,) = tmp_path.glob("run.replaced-*")
    assert tree_hash(aside) == before  # every file of the old run, byte for byte, under the new name
    assert json.loads((run_copy / "metrics.json").read_text())["epochs"] == 1


def test_a_second_writer_of_one_run_directory_is_refused_naming_the_first(tmp_path):
    run = tmp_path / "run"
    # Long enough to outlive the three attempts below (it is stopped at the end).
    args = [*LONGER, "trainer.epochs=200", f"hydra.run.dir={run}", "trainer.checkpoint_every_steps=1"]
    first = start(args, cwd=tmp_path)
    wait_for(lambda: (run / "checkpoints" / "last.pt").is_file(), first, what="the first checkpoint")
    second = run_vae_train([*TINY, f"hydra.run.dir={run}"], cwd=tmp_path, check=False)
    clean_failure(second, 2, "is in use by pid", str(first.pid))
    resume = run_vae_train([f"trainer.resume={run}"], cwd=tmp_path, check=False)  # resume while it trains
    clean_failure(resume, 2, "is in use by pid")
    overwrite = run_vae_train([*TINY, f"hydra.run.dir={run}", "trainer.overwrite=true"], cwd=tmp_path, check=False)
    clean_failure(overwrite, 2, "is in use by pid")
    assert first.poll() is None, "the first run ended before the attempts were made"
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 130 and f"Resume with: vae-train trainer.resume={run}" in err, err
    # The first run's own files only: one event file, its own checkpoint, nothing moved aside.
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert not list(tmp_path.glob("run.replaced-*"))
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["config"]["trainer"]["epochs"] == 200


def test_a_run_killed_with_sigkill_is_not_overwritten_by_a_new_run(tmp_path):
    run = tmp_path / "run"
    proc = start([*LONGER, f"hydra.run.dir={run}", "trainer.checkpoint_every_steps=1"], cwd=tmp_path)
    wait_for(lambda: (run / "checkpoints" / "last.pt").is_file(), proc, what="a checkpoint")
    proc.kill()
    proc.wait()
    time.sleep(0.2)
    before = tree_hash(run)
    again = run_vae_train([*TINY, f"hydra.run.dir={run}"], cwd=tmp_path, check=False)
    clean_failure(again, 2, "already holds an interrupted vae-train run", f"trainer.resume={run}")
    assert tree_hash(run) == before


def test_a_run_directory_with_foreign_files_is_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    proc = run_vae_train([*TINY, f"hydra.run.dir={home}"], cwd=tmp_path, check=False)
    clean_failure(proc, 2, "holds files that are not a vae-train run")
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]


def test_a_sweep_into_another_sweeps_directory_is_refused_before_any_job(tmp_path):
    sweep = tmp_path / "sweep"
    run_vae_train(["-m", *TINY, "trainer.epochs=1", "model.latent_dim=2,3", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    before = tree_hash(sweep)
    other = run_vae_train(
        ["-m", *TINY, "trainer.epochs=1", "model.latent_dim=5,6", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, check=False
    )
    clean_failure(other, 2, "holds another sweep")
    assert tree_hash(sweep) == before


def test_a_sweep_killed_and_started_again_keeps_its_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.epochs=3", "model.latent_dim=2,3,4", f"hydra.sweep.dir={sweep}"]
    proc = start(args, cwd=tmp_path)
    wait_for(lambda: (sweep / "1" / "checkpoints" / "last.pt").is_file(), proc, what="job 1's first checkpoint")
    proc.kill()
    proc.wait()
    finished = tree_hash(sweep / "0")
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "1" / "metrics.json").is_file()
    again = run_vae_train(args, cwd=tmp_path)
    assert "finished in an earlier run of this sweep" in again.stderr
    assert tree_hash(sweep / "0") == finished  # never retrained, never rewritten
    for job in ("1", "2"):
        assert json.loads((sweep / job / "metrics.json").read_text())["epochs"] == 3
    summary = (sweep / "summary.csv").read_text()
    assert summary.count(",ok,") == 3 or summary.count("ok") >= 3


# ----- wrong run ---------------------------------------------------------------------------------------------------
def test_a_quoted_resume_path_with_a_space_resumes_that_run(tmp_path):
    run = tmp_path / "renamed run"
    run_vae_train([*TINY, "trainer.epochs=1", f"hydra.run.dir='{run}'"], cwd=tmp_path)
    run_vae_train([f'trainer.resume="{run}"', "trainer.epochs=2"], cwd=tmp_path)
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").glob("*/*/metrics.json"))


def test_vae_compare_on_a_single_run_says_so_and_writes_nothing(run_copy, tmp_path):
    before = tree_hash(run_copy)
    proc = tool("vae-compare", [str(run_copy)], cwd=tmp_path)
    clean_failure(proc, 2, "is a single run, not a sweep", "vae-eval")
    assert tree_hash(run_copy) == before


# ----- checkpoint integrity ----------------------------------------------------------------------------------------
def _flip_bytes(path: Path, count: int = 2048) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupt_last_checkpoint_is_named_and_resume_falls_back_to_best(run_copy, tmp_path):
    _flip_bytes(run_copy / "checkpoints" / "last.pt")
    proc = run_vae_train([f"trainer.resume={run_copy}", "trainer.epochs=3"], cwd=tmp_path, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert "is corrupt" in text and "best.pt instead" in text and "Traceback" not in text
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and all(
        torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if k.startswith("test/")
    )


def test_both_checkpoints_corrupt_is_one_clear_error(run_copy, tmp_path):
    for name in ("last.pt", "best.pt"):
        _flip_bytes(run_copy / "checkpoints" / name)
    before = tree_hash(run_copy)
    proc = run_vae_train([f"trainer.resume={run_copy}", "trainer.epochs=3"], cwd=tmp_path, check=False)
    clean_failure(proc, 2, "is corrupt", "unusable too")
    assert tree_hash(run_copy) == before


# ----- image folders -----------------------------------------------------------------------------------------------
def _folder(root: Path, n: int = 10) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray((torch.rand(8, 8) * 255).to(torch.uint8).numpy()).save(root / f"{i}.png")
    return root


FOLDER = [
    "dataset=image_folder",
    "dataset.channels=1",
    "dataset.image_size=8",
    "dataset.val_size=2",
    "dataset.test_fraction=0.2",
    "model=mlp",
    "model.hidden_dims=[16]",
    "model.latent_dim=2",
    "trainer.batch_size=4",
    "trainer.epochs=1",
    "trainer.num_images=8",
]


def test_a_symlink_loop_neither_hangs_the_scan_nor_duplicates_images(tmp_path):
    root = _folder(tmp_path / "imgs")
    (root / "loop").symlink_to(root)  # a link back to its own folder
    (root / "again.png").symlink_to(root / "0.png")  # a second name for one file
    proc = run_vae_train(
        [*FOLDER, f"dataset.root={root}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, timeout=120
    )
    log = (tmp_path / "run" / "vae-train.log").read_text()
    assert "6 train / 2 val / 2 test images" in log, log  # 10 files, each once (not 410)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("damage", ["truncated", "bad_header"])
def test_a_damaged_cache_entry_is_discarded_and_rebuilt(tmp_path, damage):
    root = _folder(tmp_path / "imgs", 20)
    args = [*FOLDER, f"dataset.root={root}"]
    run_vae_train([*args, f"hydra.run.dir={tmp_path / 'a'}"], cwd=tmp_path)
    (entry,) = (root / ".vae-cli-cache").iterdir()
    images = entry / "images.npy"
    if damage == "truncated":
        images.write_bytes(images.read_bytes()[:200])
    else:
        images.write_bytes(b"\x93NUMPY\x01\x00garbage" + images.read_bytes()[16:])
    proc = run_vae_train([*args, f"hydra.run.dir={tmp_path / 'b'}"], cwd=tmp_path)
    assert "is damaged" in proc.stdout + proc.stderr and "allow_pickle" not in proc.stdout + proc.stderr
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("a", "b"))
    assert a["test/elbo"] == b["test/elbo"]  # the rebuilt entry holds the same pixels


def test_an_image_too_large_for_the_pixel_limit_is_named_with_the_key_to_raise(tmp_path):
    root = _folder(tmp_path / "imgs")
    Image.new("1", (12_000, 12_000)).save(root / "huge.png")
    proc = run_vae_train([*FOLDER, f"dataset.root={root}"], cwd=tmp_path, check=False)
    clean_failure(proc, 2, "huge.png", "dataset.max_image_pixels")
    assert "corrupt" not in proc.stderr


# ----- bounded output ----------------------------------------------------------------------------------------------
def test_many_tiny_epochs_keep_the_run_directory_bounded(tmp_path):
    run = tmp_path / "run"
    args = [
        *TINY,
        "dataset.num_train=192",
        "trainer.epochs=40",
        "logger.max_image_logs=4",
        "trainer.nll_iw_every_epochs=0",
    ]
    run_vae_train([*args, f"hydra.run.dir={run}"], cwd=tmp_path)
    samples = sorted((run / "images").glob("images_samples_epoch*.png"))
    assert 2 <= len(samples) <= 5, [p.name for p in samples]  # every 10th epoch and the last, not 40
    log = (run / "vae-train.log").read_text()
    assert "MB on disk" in log  # the run says how much it uses


def test_a_giant_image_grid_is_refused(tmp_path):
    proc = run_vae_train([*TINY, "trainer.num_images=100000"], cwd=tmp_path, check=False)
    clean_failure(proc, 2, "trainer.num_images", "logger.max_grid_images")


# ----- signals -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig, delay", [(signal.SIGINT, 0.3), (signal.SIGTERM, 0.3), (signal.SIGINT, 1.2)])
def test_a_signal_during_start_up_ends_cleanly_and_leaves_nothing(tmp_path, sig, delay):
    run = tmp_path / "run"
    proc = start([*TINY, f"hydra.run.dir={run}"], cwd=tmp_path)
    time.sleep(delay)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err  # 0 would mean the signal was swallowed: the run went on
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in err
    assert f"by {signal.Signals(sig).name}" in err
    if "before training began" in err:
        assert not run.exists()  # nothing was trained: nothing is left
    else:
        assert "Resume with" in err or "resume with" in err


def test_sigterm_during_data_loading_stops_at_once(tmp_path):
    root = _folder(tmp_path / "imgs", 4000)
    run = tmp_path / "run"
    proc = start([*FOLDER, f"dataset.root={root}", "dataset.num_workers=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    wait_for(lambda: (root / ".vae-cli-cache").exists(), proc, what="decoding to start")
    proc.send_signal(signal.SIGTERM)
    started = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - started < 20
    assert proc.returncode == 143, err
    assert "during loading the data, before training began" in err and "Traceback" not in err
    assert not list((root / ".vae-cli-cache").glob("*/images.npy"))  # no half-written cache entry
    assert not run.exists()


def test_sigterm_during_the_final_evaluation_is_finished_by_a_resume(tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "trainer.epochs=1", "dataset.num_test=60000", "trainer.eval_batch_size=64"]
    proc = start([*args, f"hydra.run.dir={run}"], cwd=tmp_path)
    log = run / "vae-train.log"
    wait_for(
        lambda: log.is_file() and "MB on disk (checkpoints" in log.read_text().split("epoch 1/1")[-1],
        proc,
        what="the final evaluation",
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "during the final test evaluation" in err and "Traceback" not in err
    assert not (run / "metrics.json").exists()
    steps = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    run_vae_train([f"trainer.resume={run}"], cwd=tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == steps and "test/elbo" in metrics  # evaluated, not trained further


def test_a_second_ctrl_c_stops_at_once_and_tells_the_truth_about_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = start([*LONGER, f"hydra.run.dir={run}"], cwd=tmp_path)
    wait_for(lambda: (run / "checkpoints" / "last.pt").is_file(), proc, what="the first checkpoint")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "second Ctrl-C" in err or "Stopped by SIGINT" in err
    assert "is intact" in err or "full state" in err


def test_ctrl_c_in_a_sweep_stops_the_whole_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = start(["-m", *LONGER, "model.latent_dim=2,3,4", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    wait_for(lambda: (sweep / "0" / "checkpoints" / "last.pt").is_file(), proc, what="job 0's first checkpoint")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not (sweep / "2").exists()  # the sweep stopped; it did not go on to the next jobs


# ----- messages instead of tracebacks ------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_a_run_or_sweep_directory_that_is_a_file(tmp_path, key):
    target = tmp_path / "afile"
    target.write_text("mine")
    args = [*TINY, f"{key}={target}"] + (["-m"] if "sweep" in key else [])
    proc = run_vae_train(args, cwd=tmp_path, check=False)
    clean_failure(proc, 2, "is a file, not a folder")
    assert target.read_text() == "mine"


@pytest.mark.parametrize(("name", "content"), [("notes.txt", "not a checkpoint\n"), ("x.pt", "hello\n"), ("e.pt", "")])
def test_resume_from_a_text_file(tmp_path, name, content):
    text = tmp_path / name
    text.write_text(content)
    proc = run_vae_train([f"trainer.resume={text}"], cwd=tmp_path, check=False)
    clean_failure(proc, 2, name)
    assert text.read_text() == content


@pytest.mark.parametrize(
    "name, args, needle",
    [
        ("vae-sample", ["--n", "1000000000", "--out", "pics"], "must be at most"),
        ("vae-eval", ["--k", "1000000000"], "must be at most"),
    ],
)
def test_absurd_tool_sizes_are_refused(run_copy, tmp_path, name, args, needle):
    before = tree_hash(run_copy)
    proc = tool(name, [str(run_copy), *args], cwd=tmp_path)
    clean_failure(proc, 2, needle)
    assert tree_hash(run_copy) == before


def test_vae_sample_into_a_read_only_folder(run_copy, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    proc = tool("vae-sample", [str(run_copy), "--out", str(out), "--n", "8"], cwd=tmp_path, unprivileged=True)
    out.chmod(0o755)
    clean_failure(proc, 2, "Could not write")
    assert not list(out.iterdir())


def test_a_full_disk_during_vae_eval_leaves_eval_json_intact_and_no_temp_file(run_copy, tmp_path):
    (run_copy / "eval.json").write_text('{"keep": {"me": 1}}\n')
    before = (run_copy / "eval.json").read_text()

    def limit() -> None:  # writes past 1.5 kB fail as on a full disk (EFBIG, like ENOSPC for the writer)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = tool("vae-eval", [str(run_copy), "--k", "2"], cwd=tmp_path, preexec_fn=limit)
    clean_failure(proc, 2, "Could not write the results")
    assert (run_copy / "eval.json").read_text() == before
    assert not [p for p in run_copy.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["trainer.seed=99999999999999999999999"], "trainer.seed must be in"),
        (["trainer.epochs=${nope.key}"], "Could not resolve"),
        (["hydra.run.dir=/tmp/a", "b"], "quote the whole value"),
        (["dataset.root=/tmp/données"], "quoted values"),
        (["likelihood=gaussian", "likelihood.std=1e-9"], "likelihood.std must be in"),
        (["loss.beta=inf"], "loss.beta must be a finite number"),
        (["+trainer.epochz=5"], "Did you mean 'epochs'?"),
        (["trainer.epochs=0"], "trainer.epochs must be >= 1"),
        (["model.conditional=true", "prior=vamp"], "pseudo-inputs have no labels"),
        (["loss.free_bits=0.5", "prior=mog"], "free_bits"),
        (["trainer.resume=/nowhere/at/all"], "does not exist"),
    ],
)
def test_bad_input_is_one_paragraph_exit_2_and_leaves_no_stub_directory(tmp_path, overrides, needle):
    proc = run_vae_train([*TINY, *overrides], cwd=tmp_path, check=False)
    clean_failure(proc, 2, needle)
    assert not list((tmp_path / "outputs").glob("*/*")) if (tmp_path / "outputs").exists() else True


def test_an_explicit_new_run_directory_is_not_left_behind_by_a_config_error(tmp_path):
    proc = run_vae_train([*TINY, "trainer.epochs=0", f"hydra.run.dir={tmp_path / 'new'}"], cwd=tmp_path, check=False)
    clean_failure(proc, 2, "trainer.epochs must be >= 1")
    assert not (tmp_path / "new").exists()


# ----- accepted but wrong ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, code, needle",
    [
        (["trainer.epochs=1"], 2, "below the 2 epochs"),
        (["model.latent_dim=8"], 2, "Cannot change model.latent_dim"),
        (["dataset.val_size=10"], 2, "Cannot change dataset.val_size"),
        (["loss=iwae"], 2, "Cannot change the config group 'loss'"),
        ([], 0, "nothing to do"),
    ],
)
def test_a_resume_that_would_do_the_wrong_thing_is_refused_leaving_the_run_as_it_was(
    run_copy, tmp_path, overrides, code, needle
):
    before = tree_hash(run_copy)
    proc = run_vae_train([f"trainer.resume={run_copy}", *overrides], cwd=tmp_path, check=False)
    clean_failure(proc, code, needle)
    assert tree_hash(run_copy) == before


def test_cfg_job_with_resume_prints_the_config_the_resume_uses(run_copy, tmp_path):
    proc = run_vae_train(["--cfg", "job", f"trainer.resume={run_copy}", "trainer.epochs=7"], cwd=tmp_path)
    import yaml

    printed = yaml.safe_load(proc.stdout)
    assert printed["model"]["latent_dim"] == 4 and printed["model"]["hidden_dims"] == [64]  # the run's, not 20/[400]
    assert printed["trainer"]["epochs"] == 7 and printed["dataset"]["name"] == "synthetic"


def test_nan_skip_that_gives_up_does_not_advise_the_policy_in_use(tmp_path):
    run = tmp_path / "run"
    run_vae_train([*TINY, "trainer.epochs=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    proc = run_vae_train(
        [
            f"trainer.resume={run}",
            "trainer.epochs=2",
            "optim.lr=1e30",
            "trainer.nan_policy=skip",
            "trainer.max_nan_skips=2",
        ],
        cwd=tmp_path,
        check=False,
    )
    clean_failure(proc, 2, "gave up after 2 bad batches")
    assert "trainer.nan_policy=skip drops bad batches" not in proc.stderr


# ----- small ------------------------------------------------------------------------------------------------------
def test_results_follow_the_users_umask(run_copy):
    for path in (run_copy / "metrics.json", run_copy / "checkpoints" / "last.pt", run_copy / "run.json"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o644, (path, oct(mode))  # the test process runs with umask 022


def test_the_decoded_image_cache_follows_the_users_umask(tmp_path):
    root = _folder(tmp_path / "imgs", 12)
    run_vae_train([*FOLDER, f"dataset.root={root}"], cwd=tmp_path)
    (entry,) = (root / ".vae-cli-cache").iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    assert stat.S_IMODE((entry / "images.npy").stat().st_mode) == 0o644


def test_version_is_vae_clis(tmp_path):
    proc = run_vae_train(["--version"], cwd=tmp_path)
    from vae_cli import __version__

    assert f"vae-cli) {__version__}" in proc.stdout and "torch" in proc.stdout


def _mnist_files(root: Path, parts: dict[str, int]) -> Path:
    """IDX files of learnable pattern images, for the given parts ("train", "t10k") and sizes."""
    from tests.dataset_files import pattern_images, write_idx

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for seed, (stem, n) in enumerate(parts.items()):
        images, labels = pattern_images(n, seed=seed)
        write_idx(raw / f"{stem}-images-idx3-ubyte", images)
        write_idx(raw / f"{stem}-labels-idx1-ubyte", labels.astype("uint8"))
    return root


def test_a_test_only_copy_of_mnist_trains_when_asked_and_says_how_when_not(tmp_path):
    root = _mnist_files(tmp_path / "data", {"t10k": 300})
    small = ["dataset=mnist", f"dataset.root={root}", "dataset.val_size=50", *TINY[4:]]
    refused = run_vae_train(small, cwd=tmp_path, check=False)
    clean_failure(refused, 2, "dataset.train_split=test")
    run = tmp_path / "run"
    run_vae_train([*small, "dataset.train_split=test", f"hydra.run.dir={run}"], cwd=tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and "test/elbo" not in metrics  # no held-out test numbers, and none invented


def test_vae_eval_of_the_test_split_needs_no_training_files(tmp_path):
    root = _mnist_files(tmp_path / "data", {"train": 400, "t10k": 100})
    raw = root / "MNIST" / "raw"
    run = tmp_path / "run"
    run_vae_train(
        ["dataset=mnist", f"dataset.root={root}", "dataset.val_size=50", *TINY[4:], f"hydra.run.dir={run}"],
        cwd=tmp_path,
    )
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        for path in raw.glob(f"{name}*"):
            path.unlink()
    proc = tool("vae-eval", [str(run), "--k", "4"], cwd=tmp_path)
    assert proc.returncode == 0 and "test split: 100 images" in proc.stdout, proc.stderr


# ----- results you can trust (issue 25): files read back are data -----------------------------------------------
def any_command(command: list[str], cwd: Path, **paths: Path) -> subprocess.CompletedProcess:
    """``command`` (vae-train or another tool, its arguments with ``{name}`` placeholders for ``paths``), run."""
    args = [a.format(**paths) for a in command[1:]]
    if command[0] == "vae-train":
        return run_vae_train(args, cwd, check=False)
    return tool(command[0], args, cwd=cwd)


def _craft(run: Path, **changes: str) -> None:
    """Edit both checkpoints' configs and recompute their digests, as anyone can (the digest is not keyed)."""
    from vae_cli.training.checkpoint import save_checkpoint

    for name in ("best", "last"):
        path = run / "checkpoints" / f"{name}.pt"
        state = torch.load(path, weights_only=True)
        state.pop("integrity")
        for dotted, value in changes.items():
            node = state["config"]
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
        save_checkpoint(state, path)


@pytest.mark.parametrize(
    "command",
    [
        ["vae-train", "trainer.resume={run}", "trainer.epochs=5"],
        ["vae-eval", "{run}", "--k", "2"],
        ["vae-train", "prior=pixelcnn", "prior.vqvae={run}"],
    ],
)
def test_an_interpolation_in_a_checkpoints_config_is_refused_and_never_resolved(run_copy, tmp_path, command):
    _craft(run_copy, **{"trainer.device": "${oc.env:HOME}", "trainer.epochs": "${unique_dir:%s}" % (tmp_path / "made")})
    before = tree_hash(run_copy)
    proc = any_command(command, tmp_path, run=run_copy)
    clean_failure(proc, 2, "never resolves in a config read back from a file", "at trainer.")
    assert os.environ["HOME"] not in proc.stderr.replace(str(tmp_path), "")  # the environment was not read
    assert not (tmp_path / "made").exists() and tree_hash(run_copy) == before


def test_an_interpolation_in_a_text_key_of_a_checkpoint_stays_text(run_copy, tmp_path):
    target = tmp_path / "made-by-a-resolver"
    _craft(run_copy, **{"dataset.cache_dir": f"${{unique_dir:{target}}}"})
    run_vae_train([f"trainer.resume={run_copy}", "trainer.epochs=3"], cwd=tmp_path)
    saved = torch.load(run_copy / "checkpoints" / "last.pt", weights_only=True)["config"]
    assert saved["dataset"]["cache_dir"] == f"${{unique_dir:{target}}}" and not target.exists()


def test_an_interpolation_given_to_vae_eval_set_is_refused(run_copy, tmp_path):
    before = tree_hash(run_copy)
    proc = tool("vae-eval", [str(run_copy), "--disentanglement", "--set", "seed=${oc.env:HOME}"], cwd=tmp_path)
    clean_failure(proc, 2, "seed")
    assert tree_hash(run_copy) == before


# ----- results never lost or replaced -----------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "[" * 100_000 + "]" * 100_000, ""])
def test_a_damaged_eval_json_is_moved_aside_never_dropped(run_copy, tmp_path, content):
    (run_copy / "eval.json").write_text(content)
    proc = tool("vae-eval", [str(run_copy), "--k", "2"], cwd=tmp_path)
    clean_failure(proc, 0, "could not be read", "moved to eval.json.unreadable-")
    (aside,) = run_copy.glob("eval.json.unreadable-*")
    assert aside.read_text() == content and "test" in json.loads((run_copy / "eval.json").read_text())


def test_vae_eval_of_a_run_that_is_training_is_refused(run_copy, tmp_path):
    from vae_cli.process.locks import DirLock

    before = tree_hash(run_copy)
    lock = DirLock(run_copy)
    assert lock.acquire()
    try:
        proc = tool("vae-eval", [str(run_copy), "--k", "2"], cwd=tmp_path)
    finally:
        lock.release()
    clean_failure(proc, 2, "is in use by", "Nothing was written")
    assert tree_hash(run_copy) == before
    printed = tool("vae-eval", [str(run_copy), "--k", "2", "--no-write"], cwd=tmp_path)
    clean_failure(printed, 0, "K=2")


# ----- rankings compare like with like ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_job_sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("sweep")
    sweep = cwd / "sweep"
    run_vae_train(["-m", *TINY, "trainer.epochs=1", "loss.beta=1,4", f"hydra.sweep.dir={sweep}"], cwd=cwd)
    return sweep


@pytest.fixture
def sweep_copy(two_job_sweep, tmp_path) -> Path:
    dest = tmp_path / "sweep"
    shutil.copytree(two_job_sweep, dest, symlinks=True)
    return dest


def test_vae_compare_refuses_entries_of_different_k_and_re_evaluates_them_with_eval(sweep_copy, tmp_path):
    for job, k in (("0", "2"), ("1", "3")):
        clean_failure(tool("vae-eval", [str(sweep_copy / job), "--k", k], cwd=tmp_path), 0)
    before = tree_hash(sweep_copy)
    proc = tool("vae-compare", [str(sweep_copy), "--metric", "eval/test/nll_iw"], cwd=tmp_path)
    clean_failure(proc, 2, "K")
    assert tree_hash(sweep_copy) == before
    again = tool("vae-compare", [str(sweep_copy), "--eval", "--k", "2", "--metric", "eval/test/nll_iw"], cwd=tmp_path)
    clean_failure(again, 0, "Ranked by eval/test/nll_iw")
    assert {json.loads((sweep_copy / j / "eval.json").read_text())["test"]["k"] for j in "01"} == {2}


def test_vae_compare_refuses_entries_computed_before_the_job_trained_further(sweep_copy, tmp_path):
    for job in "01":
        clean_failure(tool("vae-eval", [str(sweep_copy / job), "--k", "2"], cwd=tmp_path), 0)
    run_vae_train([f"trainer.resume={sweep_copy / '0'}", "trainer.epochs=2"], cwd=tmp_path)  # job 0 trains on
    proc = tool("vae-compare", [str(sweep_copy), "--metric", "eval/test/nll_iw"], cwd=tmp_path)
    clean_failure(proc, 2, "job(s) 0 were computed before the job trained further")
    summary = tool("vae-compare", [str(sweep_copy)], cwd=tmp_path)  # the default ranking skips the stale entry
    clean_failure(summary, 0)
    assert "Ranked by eval/test/nll_iw" not in summary.stdout


def test_unreadable_metrics_files_in_a_sweep_are_shown_not_crashed_on(sweep_copy, tmp_path):
    (sweep_copy / "0" / "metrics.json").write_text("[1, 2, 3]")
    (sweep_copy / "1" / "metrics.json").write_text("{" * 50_000)
    proc = tool("vae-compare", [str(sweep_copy)], cwd=tmp_path)
    clean_failure(proc, 0, "compare.csv")


def test_sigterm_to_vae_compare_is_a_message(sweep_copy, tmp_path):
    exe = Path(vae_train_executable()).parent / "vae-compare"
    proc = subprocess.Popen(
        [str(exe), str(sweep_copy), "--eval", "--k", "5000"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.6)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "vae-compare: SIGTERM: interrupted" in err and "Traceback" not in err, err


def test_a_nan_metric_is_never_best(sweep_copy, tmp_path):
    metrics = json.loads((sweep_copy / "0" / "metrics.json").read_text())
    metrics["val/elbo"] = float("nan")
    (sweep_copy / "0" / "metrics.json").write_text(json.dumps(metrics))
    proc = tool("vae-compare", [str(sweep_copy), "--metric", "val/elbo"], cwd=tmp_path)
    clean_failure(proc, 0, "Not ranked (no finite value): job(s) 0")
    rows = list(csv.DictReader((sweep_copy / "compare.csv").open()))
    assert rows[0]["job"] == "1" and rows[0]["rank"] == "1"


def test_a_sweep_over_objectives_is_ranked_by_a_bound_not_each_objectives_loss(tmp_path):
    sweep = tmp_path / "sweep"
    run_vae_train(["-m", *TINY, "trainer.epochs=1", "loss=elbo,iwae", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    summary = (sweep / "summary.md").read_text()
    assert "best: the lowest val/nll_iw" in summary  # the importance-weighted bound both report
    proc = tool("vae-compare", [str(sweep)], cwd=tmp_path)
    clean_failure(proc, 0, "Ranked by val/nll_iw")
    refused = tool("vae-compare", [str(sweep), "--metric", "val/loss"], cwd=tmp_path)
    clean_failure(refused, 2, "val/loss")


def test_vae_compare_on_a_read_only_sweep_writes_elsewhere_with_out(sweep_copy, tmp_path):
    before = tree_hash(sweep_copy)
    for path in [sweep_copy, *sweep_copy.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    try:
        proc = tool("vae-compare", [str(sweep_copy)], cwd=tmp_path, unprivileged=True)
        elsewhere = tool(
            "vae-compare", [str(sweep_copy), "--out", str(tmp_path / "cmp")], cwd=tmp_path, unprivileged=True
        )
    finally:
        for path in [sweep_copy, *sweep_copy.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
    clean_failure(proc, 2, "Could not write the comparison", "--out")
    clean_failure(elsewhere, 0, "compare.csv")
    assert (tmp_path / "cmp" / "compare.md").is_file() and tree_hash(sweep_copy) == before


def test_vae_compare_waits_for_a_running_sweep(sweep_copy, tmp_path):
    from vae_cli.process.locks import DirLock

    before = tree_hash(sweep_copy)
    lock = DirLock(sweep_copy)
    assert lock.acquire()
    try:
        proc = tool("vae-compare", [str(sweep_copy)], cwd=tmp_path)
    finally:
        lock.release()
    clean_failure(proc, 2, "the sweep is still running", "--out")
    assert tree_hash(sweep_copy) == before


# ----- sweeps behave like single runs -----------------------------------------------------------------------------
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
SLOW_SWEEP = [*TINY, "dataset.num_train=2560", "trainer.epochs=30", "trainer.seed=0,1,2"]


def _children(pid: int) -> list[int]:
    from vae_cli.process.workers import child_processes

    return child_processes(pid)


def _gone(pids: list[int]) -> bool:
    return all(
        not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in pids
    )


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_joblib_sweep_stops_on_a_signal_and_the_same_command_finishes_it(tmp_path, sig, group):
    sweep = tmp_path / "sweep"
    args = ["-m", *SLOW_SWEEP, *JOBLIB, f"hydra.sweep.dir={sweep}"]
    proc = start(args, cwd=tmp_path, start_new_session=True)
    wait_for(lambda: any(sweep.glob("*/checkpoints/last.pt")), proc, timeout=240, what="a job's first checkpoint")
    workers = _children(proc.pid)
    if group:
        os.killpg(proc.pid, sig)  # a Ctrl-C in the terminal reaches every process of the group
    else:
        proc.send_signal(sig)  # kill, timeout, systemd: the parent only
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + sig and "Traceback" not in err, err[-3000:]
    assert f"the sweep was stopped by {signal.Signals(sig).name}" in err
    wait_for(lambda: _gone(workers), None, timeout=30, what="the workers to exit")
    states = [json.loads(p.read_text())["state"] for p in sweep.glob("*/run.json")]
    assert "interrupted" in states and "running" not in states
    again = run_vae_train(args, cwd=tmp_path, timeout=600)
    assert "Traceback" not in again.stderr
    for job in "012":
        assert json.loads((sweep / job / "metrics.json").read_text())["epochs"] == 30


def test_ctrl_c_while_joblib_workers_start_is_a_clean_stop(tmp_path):
    sweep = tmp_path / "sweep"
    proc = start(["-m", *SLOW_SWEEP, *JOBLIB, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, start_new_session=True)
    wait_for(lambda: len(_children(proc.pid)) >= 2, proc, timeout=120, what="the workers to start")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert "the sweep was stopped by SIGINT" in err


def test_sigkill_of_a_joblib_sweep_leaves_no_worker_behind(tmp_path):
    sweep = tmp_path / "sweep"
    proc = start(["-m", *SLOW_SWEEP, *JOBLIB, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, start_new_session=True)
    wait_for(lambda: any(sweep.glob("*/checkpoints/last.pt")), proc, timeout=240, what="a job's first checkpoint")
    workers = _children(proc.pid)
    assert workers
    proc.kill()
    proc.wait()
    wait_for(lambda: _gone(workers), None, timeout=60, what="the orphaned workers to exit")
    states = [json.loads(p.read_text())["state"] for p in sweep.glob("*/run.json")]
    assert "interrupted" in states  # each checkpointed and said so before it exited


OPTUNA = [
    "hydra/sweeper=optuna",
    "hydra.sweeper.n_trials=3",
    "hydra.sweeper.n_jobs=1",
    "hydra.sweeper.sampler.seed=0",
    "optim.lr=tag(log, interval(1e-4, 1e-2))",
]


def _trial_states(sweep: Path) -> list[str]:
    import optuna

    study = optuna.load_study(study_name="vae-train", storage=f"sqlite:///{sweep / 'optuna.db'}")
    return [t.state.name for t in study.trials]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_optuna_sweep_stopped_or_killed_continues_with_the_same_command(tmp_path, sig):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "dataset.num_train=2560", "trainer.epochs=6", *OPTUNA, f"hydra.sweep.dir={sweep}"]
    proc = start(args, cwd=tmp_path, start_new_session=True)
    wait_for(
        lambda: (sweep / "0" / "checkpoints" / "last.pt").is_file(), proc, timeout=240, what="trial 0's checkpoint"
    )
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=180)
    if sig != signal.SIGKILL:
        assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    again = run_vae_train(args, cwd=tmp_path, timeout=600)
    assert "Continuing study" in again.stdout + again.stderr and "Traceback" not in again.stderr
    assert _trial_states(sweep).count("COMPLETE") == 3


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("empty", "is empty"),
        ("missing", "is missing"),
        ("garbage", "is damaged"),
        ("locked", "is locked by another process"),
    ],
)
def test_an_unusable_optuna_database_is_refused_before_any_trial(tmp_path, damage, needle):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.epochs=1", *OPTUNA, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}"]
    run_vae_train(args, cwd=tmp_path)
    database = sweep / "optuna.db"
    holder = None
    if damage == "empty":
        database.write_bytes(b"")
    elif damage == "missing":
        database.unlink()
    elif damage == "garbage":
        database.write_bytes(b"this is not a database" * 100)
    before = tree_hash(sweep)  # before the lock: closing any descriptor of the file drops this process's locks
    if damage == "locked":
        import sqlite3

        holder = sqlite3.connect(database)
        holder.execute("BEGIN EXCLUSIVE")
    more = [*args[:-2], "hydra.sweeper.n_trials=2", args[-1]]
    proc = run_vae_train(more, cwd=tmp_path, check=False)
    if holder is not None:
        holder.close()
    clean_failure(proc, 2, needle, "Nothing was")
    after = tree_hash(sweep)
    after.pop(".lock", None), before.pop(".lock", None)
    assert after == before


def test_a_full_disk_when_the_optuna_study_is_created_is_a_message_and_the_rerun_continues(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.epochs=1", *OPTUNA, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"]

    def limit() -> None:  # writes past 20 kB fail as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    cmd = [vae_train_executable(), *args]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    clean_failure(proc, 2, "the study's database", "free space and run the same command again")
    run_vae_train(args, cwd=tmp_path)
    assert _trial_states(sweep) == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["hydra.sweeper.n_trials=-2"], "at least one trial"),
        (["optim.lr=tag(log, interval(1e-2, 1e-4))"], "low end above its high end"),
    ],
)
def test_an_optuna_search_that_would_run_nothing_is_refused(tmp_path, extra, needle):
    proc = run_vae_train(["-m", *TINY, *OPTUNA, *extra, f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False)
    clean_failure(proc, 2, needle, "Nothing was run")


def test_an_optuna_sweep_metric_no_run_writes_is_named_not_called_a_failed_job(tmp_path):
    args = ["-m", *TINY, *OPTUNA, "hydra.sweeper.n_trials=1", "trainer.sweep_metric=val/tc"]
    proc = run_vae_train([*args, f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "trainer.sweep_metric=val/tc is not a metric this run writes" in proc.stderr


def test_a_refused_sweep_job_makes_the_sweep_fail_and_a_direct_resume_keeps_its_job(sweep_copy, tmp_path):
    args = ["-m", *TINY, "trainer.epochs=1", "loss.beta=1,4", f"hydra.sweep.dir={sweep_copy}"]
    # A job resumed directly to train further stays the sweep's job: the sweep's next run keeps it.
    run_vae_train([f"trainer.resume={sweep_copy / '0'}", "trainer.epochs=2"], cwd=tmp_path)
    again = run_vae_train(args, cwd=tmp_path)
    assert f"{sweep_copy / '0'} finished in an earlier run of this sweep" in again.stderr
    # A job folder that holds something else is refused; the sweep says so and does not exit 0.
    status = json.loads((sweep_copy / "1" / "run.json").read_text())
    status["overrides"] = ["loss.beta=7"]
    (sweep_copy / "1" / "run.json").write_text(json.dumps(status))
    before = tree_hash(sweep_copy / "1")
    proc = run_vae_train(args, cwd=tmp_path, check=False)
    clean_failure(proc, 1, "holds a job of another sweep", "did not finish", "(refused)")
    assert "refused" in (sweep_copy / "summary.md").read_text() and tree_hash(sweep_copy / "1") == before


def test_a_second_sweep_into_a_running_sweeps_folder_is_refused_at_once(sweep_copy, tmp_path):
    from vae_cli.process.locks import DirLock

    lock = DirLock(sweep_copy)
    assert lock.acquire()
    try:
        proc = run_vae_train(
            ["-m", *TINY, "trainer.epochs=1", "loss.beta=1,4", f"hydra.sweep.dir={sweep_copy}"], tmp_path, check=False
        )
    finally:
        lock.release()
    clean_failure(proc, 2, "is in use by", "Nothing was started")


@pytest.mark.parametrize(
    "command, sig",
    [
        (["vae-eval", "{run}", "--k", "5000"], signal.SIGTERM),
        (["vae-sample", "{run}", "--out", "{tmp}/pics", "--n", "1024", "--steps", "64"], signal.SIGTERM),
        # A hang-up (a dropped ssh session) is a stop like SIGTERM, exit 129.
        (["vae-eval", "{run}", "--k", "5000"], signal.SIGHUP),
    ],
)
def test_sigterm_to_a_tool_is_a_message_not_a_silent_143(run_copy, tmp_path, command, sig):
    before = tree_hash(run_copy)
    exe = Path(vae_train_executable()).parent / command[0]
    args = [a.format(run=run_copy, tmp=tmp_path) for a in command[1:]]
    proc = subprocess.Popen([str(exe), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.6)  # inside the tool (its handler is set before torch is imported), before it can finish
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the tool finished before the signal")
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig and f"{command[0]}: {name}: interrupted" in err and "Traceback" not in err, err
    if command[0] == "vae-eval":
        assert tree_hash(run_copy) == before


def test_a_stop_at_any_moment_of_a_tools_start_is_its_message_never_an_abort(run_copy, tmp_path):
    """Signals while the tool imports torch: a handler's exception inside a Python function that C++ called during
    the import cannot unwind and aborts the process (a C++ 'terminate called' and -6); the tools defer a stop
    until the import is done, then end with their message."""
    exe = Path(vae_train_executable()).parent / "vae-eval"
    for i, delay in enumerate((0.15, 0.35, 0.55, 0.75, 0.95, 1.15, 1.35, 1.55)):
        sig = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)[i % 3]
        proc = subprocess.Popen(
            [str(exe), str(run_copy), "--k", "5000", "--no-write"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        said = "vae-eval: interrupted" if sig == signal.SIGINT else f"vae-eval: {signal.Signals(sig).name}: interrupted"
        assert proc.returncode == 128 + sig and said in err, (delay, sig, proc.returncode, err)
        assert "Traceback" not in err and "terminate called" not in err, err


# ----- every value checked before the first step; true messages ------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["loss=dip_vae", "trainer.eval_batch_size=1"], "needs trainer.eval_batch_size >= 2"),
        (["loss=beta_tcvae", "loss.estimator=mss", "trainer.eval_batch_size=2"], "trainer.eval_batch_size >= 3"),
        (["disentanglement.seed=-1"], "disentanglement.seed must be in [0, 2**32)"),
        (["disentanglement.mig.num_train=100000000"], "must be at most 1_000_000"),
        (["disentanglement.factor_vae.batch_size=6400", "disentanglement.factor_vae.num_train=20000"], "would encode"),
        (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0"),
        (["hydra.run.dir=${nowhere:x}"], "hydra.run.dir"),
        (["-m", "hydra.sweep.dir=${oops.key}"], "hydra.sweep.dir"),
        (["trainer.sweep_metric=val/tc"], "trainer.sweep_metric=val/tc is not a metric this run writes"),
    ],
)
def test_values_that_would_mean_nothing_are_refused_before_the_first_step(tmp_path, overrides, needle):
    proc = run_vae_train([*TINY, *overrides], cwd=tmp_path, check=False)
    clean_failure(proc, 2, needle)
    assert not list(tmp_path.rglob("checkpoints"))


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ("file,x\n0.png,0\n1.png,0\n", "'x' has one value only"),
        ("file,x\n0.png,0\n0.png,1\n", "'0.png' is listed twice"),
        ("file,x,x\n0.png,0,1\n1.png,1,0\n", "appear more than once"),
        ("file,x\n0.png,0,9\n1.png,1\n", "row 2 has 3 fields"),
        ("file,x\n0.png,nan\n1.png,1\n", "'x' is empty or nan"),
        ("file,x\n../../etc/passwd,0\n1.png,1\n", "stay inside dataset.root"),
        (None, "is not a file in dataset.root"),
    ],
)
def test_a_factor_table_is_checked_at_start_up(tmp_path, table, needle):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.fromarray((np.arange(64, dtype=np.uint8).reshape(8, 8) * (i + 1)) % 255).save(folder / f"{i}.png")
    if table is not None:
        (folder / "factors.csv").write_text(table)
    # A valid table of the same name where the command is started: never the one read (dataset.root's is).
    (tmp_path / "factors.csv").write_text("file,x\n0.png,0\n1.png,1\n")
    args = ["dataset=image_folder", "model=mlp", f"dataset.root={folder}", "dataset.image_size=8", "dataset.val_size=1"]
    args += ["dataset.factors_csv=factors.csv", "disentanglement.every_epochs=1", "trainer.batch_size=2"]
    before = tree_hash(folder)
    proc = run_vae_train([*args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    clean_failure(proc, 2, needle)
    assert not (tmp_path / "run" / "checkpoints").exists() and tree_hash(folder) == before


def test_a_utf8_factor_table_with_a_byte_order_mark_is_read(tmp_path):
    from vae_cli.factors.table import read_factors_csv

    (tmp_path / "f.csv").write_bytes("\ufefffile,x\r\na.png,1\r\nb.png,2\r\n".encode())
    assert read_factors_csv(tmp_path / "f.csv")[2] == ("x",)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["loss.k=3"], None),
        (["loss=iwae", "loss.k=3"], None),
        (["loss.beta=2"], "A resume keeps the run's loss"),
        (["loss=elbo"], "trained with loss=iwae, not loss=elbo"),
    ],
)
def test_a_resume_of_an_iwae_run_knows_its_objective(tmp_path, extra, needle):
    run = tmp_path / "run"
    run_vae_train([*TINY, "trainer.epochs=1", "loss=iwae", f"hydra.run.dir={run}"], cwd=tmp_path)
    before = tree_hash(run)
    proc = run_vae_train([f"trainer.resume={run}", "trainer.epochs=2", *extra], cwd=tmp_path, check=False)
    if needle is None:
        clean_failure(proc, 0)
        assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["config"]["loss"]["k"] == 3
    else:
        clean_failure(proc, 2, needle)
        assert "which this run uses). Add" not in proc.stderr and tree_hash(run) == before


@pytest.mark.parametrize("command", [["vae-eval", "{sweep}"], ["vae-train", "trainer.resume={sweep}"]])
def test_a_sweep_folder_given_as_a_run_is_called_a_sweep(sweep_copy, tmp_path, command):
    before = tree_hash(sweep_copy)
    proc = any_command(command, tmp_path, sweep=sweep_copy)
    clean_failure(proc, 2, "is a sweep folder (vae-train -m), not a run", "vae-compare")
    assert "stopped before its first" not in proc.stderr and tree_hash(sweep_copy) == before


@pytest.mark.parametrize("damage", ["text", "flipped"])
def test_a_bad_prior_vqvae_checkpoint_names_the_key_it_came_from(run_copy, tmp_path, damage):
    for name in ("best", "last"):
        path = run_copy / "checkpoints" / f"{name}.pt"
        if damage == "text":
            path.write_text("hello\n")
        else:
            _flip_bytes(path)
    before = tree_hash(run_copy)
    proc = run_vae_train(["prior=pixelcnn", f"prior.vqvae={run_copy}"], cwd=tmp_path, check=False)
    clean_failure(proc, 2, f"prior.vqvae={run_copy}")
    assert f"trainer.resume={run_copy}" not in proc.stderr and tree_hash(run_copy) == before


@pytest.mark.parametrize("tool_name", ["vae-eval", "vae-sample"])
def test_a_seed_beyond_64_bits_is_refused(run_copy, tmp_path, tool_name):
    extra = ["--out", str(tmp_path / "pics")] if tool_name == "vae-sample" else []
    proc = tool(tool_name, [str(run_copy), "--seed", str(2**70), *extra], cwd=tmp_path)
    clean_failure(proc, 2, "--seed: must be a whole number in [0, 2**62)")


def test_the_count_of_kinds_tried():
    """Every test function here is a kind, and every parameter of a parametrized one (the count the README and
    docs/reliability.md report; it must not shrink below the issue's list)."""
    module = sys.modules[__name__]
    count = 0
    for name, fn in vars(module).items():
        if name.startswith("test_") and name != "test_the_count_of_kinds_tried" and callable(fn):
            marks = getattr(fn, "pytestmark", [])
            params = [m for m in marks if m.name == "parametrize"]
            count += len(params[0].args[1]) if params else 1
    assert count >= 120, count
