"""The config tree is found from a built wheel installed in a fresh environment, run from an unrelated directory,
and from a plain source checkout."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, TINY


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    # Without PYTHONPATH: the fresh environment must find vae_cli in its own site-packages, not in a checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_built_wheel_works_in_a_fresh_environment_from_an_unrelated_directory(tmp_path):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)], cwd=tmp_path)
    wheels = list(dist.glob("vae_cli-*.whl"))
    assert len(wheels) == 1

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    venv_site = next((venv / "lib").glob("python3.*/site-packages"))
    # Reuse this environment's installed dependencies (torch is gigabytes), but not its vae_cli: a plain path
    # line in a .pth adds the folder without running the .pth files in it (the editable install's hook).
    deps = [p for p in site.getsitepackages() if Path(p).name == "site-packages"]
    (venv_site / "_test_deps.pth").write_text("\n".join(deps) + "\n")
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheels[0])],
        cwd=tmp_path,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import vae_cli.config.tree as c; print(c.__file__); print(c.config_dir())",
        ],
        cwd=elsewhere,
    )
    module_file, configs = where.stdout.split()
    assert module_file.startswith(str(venv_site)) and configs == str(venv_site / "vae_cli" / "configs")
    assert (Path(configs) / "dataset" / "fashion_mnist.yaml").is_file()

    job = _run([str(venv / "bin" / "vae-train"), "--cfg", "job", "model=conv"], cwd=elsewhere)
    assert yaml.safe_load(job.stdout)["model"]["arch"] == "conv"
    _run([str(venv / "bin" / "vae-train"), *TINY, "trainer.epochs=1"], cwd=elsewhere)
    runs = list((elsewhere / "outputs").glob("*/*/metrics.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["epochs"] == 1
    # The other console scripts are installed too and work on that run.
    _run([str(venv / "bin" / "vae-eval"), str(runs[0].parent), "--k", "2"], cwd=elsewhere)
    assert json.loads((runs[0].parent / "eval.json").read_text())["test"]["k"] == 2
    for tool in ("vae-sample", "vae-compare", "vae-fit-sampler"):
        assert "usage:" in _run([str(venv / "bin" / tool), "--help"], cwd=elsewhere).stdout
    # The Python entry point for notebooks, from the installed wheel: the model, its config and its data.
    notebook = f"""
import torch
from vae_cli import load_run
run = load_run({str(runs[0].parent)!r})
test = run.split("test")
x = test.images[:8].float() / 255
out = run.model(x, test.labels[:8])
assert out.mu.shape == (8, run.config.model.latent_dim) and run.config.loss.name == "elbo"
assert run.splits().train.shape[0] == 512 and run.objective.terms[0] == "loss"
import vae_cli, sys
print(vae_cli.__file__)
"""
    printed = _run([str(venv / "bin" / "python"), "-c", notebook], cwd=elsewhere).stdout
    assert printed.strip().startswith(str(venv_site))


def test_source_checkout_finds_the_top_level_configs(tmp_path):
    # `python -m vae_cli.cli` from the checkout itself: the package next to configs/, nothing installed needed.
    proc = _run([sys.executable, "-m", "vae_cli.cli", "--cfg", "job", "dataset=mnist"], cwd=REPO)
    assert yaml.safe_load(proc.stdout)["dataset"]["name"] == "mnist"
    where = _run([sys.executable, "-c", "import vae_cli.config.tree as c; print(c.config_dir())"], cwd=REPO)
    assert where.stdout.strip() == str(REPO / "configs")
