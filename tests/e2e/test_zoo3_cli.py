"""Model zoo III through the real commands: every posterior trains (with the objectives it composes with), resumes
bit for bit mid-epoch, evaluates with its own density, samples and compares; a sweep over posteriors and objectives
is ranked by vae-compare; bf16 and torchrun train them; combinations that cannot work are refused before anything
runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, run_tool, run_vae_train, stopped_mid_run_then_resumed, vae_train_executable
from tests.e2e.events import load_events
from vae_cli.config.catalog import POSTERIORS

# Each posterior with a prior of its space and an objective it composes with (the resume and eval cases).
CASES = {
    "gaussian": ["posterior=gaussian", "loss=hvae", "loss.leapfrog_steps=2", "loss.tempering=0.5"],
    "planar": ["posterior=planar", "posterior.flows=3", "loss=ciwae", "loss.k=4", "loss.beta=0.2"],
    "radial": ["posterior=radial", "posterior.flows=3", "prior=vamp", "prior.components=8"],
    "iaf": [  # the affine step here; the gated one (the default) trains under torchrun and in the sweep below
        "posterior=iaf",
        "posterior.flows=2",
        "posterior.hidden=[16]",
        "posterior.context=8",
        "posterior.step=affine",
        "loss=piwae",
        "loss.m=2",
        "loss.k=3",
    ],
    "vmf": ["posterior=vmf", "prior=uniform_sphere"],
    "wrapped_normal": [
        "posterior=wrapped_normal",
        "prior=wrapped_normal",
        "posterior.curvature=0.5",
        "loss=iwae",
        "loss.k=3",
    ],
}


def test_every_posterior_of_the_catalog_has_a_case_here():
    assert set(CASES) == set(POSTERIORS.names())


def weights(run: Path) -> tuple[dict, dict]:
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return ckpt["model"], ckpt.get("objective") or {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each case twice: 3 epochs straight through, and stopped by Ctrl-C inside epoch 2 then resumed."""
    cwd = tmp_path_factory.mktemp("zoo3")
    out = {}
    for name, case in CASES.items():
        args = [*TINY, *case, "trainer.epochs=3", "trainer.nll_iw_every_epochs=1", "trainer.nll_iw_k=4"]
        straight = cwd / f"{name}-straight"
        run_vae_train([*args, f"hydra.run.dir={straight}"], cwd=cwd, timeout=600)
        resumed = cwd / f"{name}-resumed"
        stopped_mid_run_then_resumed(args, resumed, cwd, after="epoch 1/3", timeout=300)
        out[name] = (straight, resumed)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_each_posterior_resumes_bit_for_bit(runs, name):
    straight, resumed = runs[name]
    (ma, oa), (mb, ob) = weights(straight), weights(resumed)
    assert ma.keys() == mb.keys() and oa.keys() == ob.keys()
    for a, b in ((ma, mb), (oa, ob)):
        assert all(torch.equal(a[k], b[k]) for k in a), name
    if name == "iaf":
        assert any(k.startswith("posterior.steps.") for k in ma)  # the flow's MADEs are saved with the model


@pytest.mark.parametrize("name", list(CASES))
def test_each_posterior_logs_a_finite_bound_and_evaluates_with_its_own_density(runs, name, tmp_path):
    straight, _ = runs[name]
    metrics = json.loads((straight / "metrics.json").read_text())
    assert math.isfinite(metrics["test/loss"]) and math.isfinite(metrics["val/nll_iw"])
    events = load_events(straight)
    assert "val/nll_iw" in events.Tags()["scalars"]
    proc = run_tool("vae-eval", [str(straight), "--k", "50"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((straight / "eval.json").read_text())["test"]
    # The IW estimate of log p(x) is at least the ELBO (Jensen), with the posterior's own log q in its weights.
    assert math.isfinite(result["nll_iw"]) and result["nll_iw"] <= -result["elbo"] + 0.5, result
    if name != "gaussian":
        assert result["kl_per_dim"] is None  # no per-dimension closed form outside the Gaussian
    again = run_tool("vae-eval", [str(straight), "--k", "50"], cwd=tmp_path)
    assert json.loads((straight / "eval.json").read_text())["test"]["nll_iw"] == result["nll_iw"]  # seeded
    assert again.returncode == 0
    pics = tmp_path / "pics"
    sample = run_tool("vae-sample", [str(straight), "--out", str(pics), "--n", "16"], cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    assert {p.name for p in pics.glob("*.png")} >= {"samples.png", "reconstructions.png", "traversals.png"}


def test_vmf_latents_lie_on_the_sphere_and_ball_latents_in_the_ball(runs):
    from vae_cli import load_run

    for name, inside in (
        ("vmf", lambda r: torch.allclose(r, torch.ones_like(r), atol=1e-4)),
        ("wrapped_normal", lambda r: bool((r < 1 / math.sqrt(0.5)).all())),
    ):
        run = load_run(runs[name][0])
        x = torch.rand(8, 1, 28, 28).round()
        with torch.no_grad():
            out = run.model(x)
            z = run.model.prior_sample(64, torch.Generator().manual_seed(0))
        assert inside(out.z.norm(dim=-1)) and inside(z.norm(dim=-1)), name


def test_a_sweep_of_posteriors_and_objectives_is_ranked_by_vae_compare(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *TINY,
        "posterior=gaussian,planar,iaf",
        "loss=elbo,iwae",
        "trainer.nll_iw_every_epochs=1",
        "trainer.nll_iw_k=4",
        f"hydra.sweep.dir={sweep}",
    ]
    # Each posterior with its own defaults (posterior.flows is a key of planar and iaf only).
    proc = run_vae_train(args, cwd=tmp_path, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (sweep / "summary.csv").read_text()
    assert summary.count("\n") == 7 and "failed" not in summary and "posterior" in summary.splitlines()[0]
    compare = run_tool("vae-compare", [str(sweep), "--metric", "val/nll_iw"], cwd=tmp_path)
    assert compare.returncode == 0, compare.stderr
    table = (sweep / "compare.md").read_text()
    assert table.count("| ok |") == 6 and "planar" in table and "iaf" in table


def test_bf16_trains_the_new_posteriors(tmp_path):
    for name in ("planar", "vmf", "wrapped_normal"):
        run = tmp_path / name
        run_vae_train([*TINY, *CASES[name], "trainer.precision=bf16", f"hydra.run.dir={run}"], cwd=tmp_path)
        assert math.isfinite(json.loads((run / "metrics.json").read_text())["test/loss"]), name


def test_compile_trains_a_flow_and_the_vmf_sampler(tmp_path):
    """Under trainer.compile=true the vMF's rejection loop runs eagerly (a graph break); its log-Bessel, KL and draw
    transform are in the compiled graph."""
    for name in ("iaf", "vmf"):
        run = tmp_path / name
        args = [*TINY, *CASES[name], "trainer.epochs=1", "trainer.compile=true", f"hydra.run.dir={run}"]
        run_vae_train(args, cwd=tmp_path, timeout=600)
        assert math.isfinite(json.loads((run / "metrics.json").read_text())["test/loss"]), name


def test_torchrun_trains_an_iaf_posterior_with_the_hamiltonian_objective(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            vae_train_executable(),
            *TINY,
            "posterior=iaf",
            "posterior.flows=2",
            "posterior.hidden=[16]",
            "loss=hvae",
            "loss.leapfrog_steps=2",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["test/elbo"]) and metrics["steps"] == 2 * 4


REFUSED = [
    (["posterior=vmf"], "posterior=vmf puts z on the unit sphere"),
    (["prior=uniform_sphere"], "posterior=gaussian puts z on R^D and prior=uniform_sphere"),
    (["posterior=vmf", "prior=uniform_sphere", "loss=iwae"], "draws z with a rejection sampler"),
    (["posterior=planar", "loss=beta_tcvae"], "loss=beta_tcvae needs a diagonal Gaussian"),
    (["posterior=iaf", "loss=iwae", "loss.estimator=dreg"], "loss.estimator=dreg evaluates log q"),
    (["posterior=wrapped_normal", "prior=mog"], "is a density on R^D"),
    (["posterior=vmf", "prior=uniform_sphere", "loss=hvae"], "gradients of log p(x, z) in z, in flat space"),
    (["posterior=planar", "model=hvae"], "posterior=planar is a posterior over one latent vector"),
    (["loss=hvae", "model=hvae"], "loss=hvae moves z by the gradient of log p(x, z)"),
    (["loss=hvae", "loss.tempering=0.3", "loss.leapfrog_steps=0"], "needs loss.leapfrog_steps >= 1"),
    (["posterior=planar", "loss.free_bits=0.1"], "loss.free_bits needs each latent dimension's KL in closed form"),
    (["posterior.flows=3"], "posterior.flows is a key of"),
    (["posterior=iaf", "posterior.step=sigmoid"], "posterior.step must be one of gated, affine"),
    (["loss=hvae", "trainer.compile=true"], "aot_autograd does not support"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_combinations_that_cannot_work_are_refused_before_anything_runs(args, message, tmp_path):
    proc = run_vae_train([*args, "dataset=synthetic"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "outputs").glob("*/*"))
