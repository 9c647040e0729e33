"""The model zoo through the real commands: every objective with every prior in one sweep, CVAE sampling and
conditional IW-NLL, exact resume with an objective that has its own parameters, torchrun, NaN rollback, and the
tools (vae-eval, vae-sample, vae-compare) on the variants."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import TINY, run_vae_train, stopped_mid_run_then_resumed, vae_train_executable
from tests.e2e.events import load_events, scalar_steps
from vae_cli.config.catalog import OBJECTIVES, PRIORS

OBJECTIVE_TERMS = {
    "elbo": ("loss", "recon", "kl", "elbo"),
    "iwae": ("loss", "iw_elbo", "elbo", "recon", "kl"),
    "miwae": ("loss", "iw_elbo", "elbo", "recon", "kl"),
    "beta_tcvae": ("loss", "recon", "kl", "elbo", "mi", "tc", "dwkl"),
    "factor_vae": ("loss", "recon", "kl", "elbo", "tc", "disc", "disc_acc"),
    "dip_vae": ("loss", "recon", "kl", "elbo", "dip"),
    "info_vae": ("loss", "recon", "kl", "elbo", "mmd"),
    "piwae": ("loss", "iw_elbo", "miwae", "elbo", "recon", "kl"),
    "ciwae": ("loss", "ciwae", "iw_elbo", "elbo", "recon", "kl"),
    "hvae": ("loss", "elbo", "recon", "kl", "step_size"),
    "vaegan": ("loss", "recon", "kl", "pixel_recon", "elbo", "gen", "disc", "disc_acc"),
}


def tool(name: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(vae_train_executable()).parent / name
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


# Every objective of the catalog with a likelihood bound (each must say here which terms it logs) with every prior of
# a latent vector in flat space (the sphere's and the ball's priors go with their own posteriors:
# tests/e2e/test_zoo3_cli.py; the autoencoders without a bound, whose prior is only sampled: test_zoo4_cli.py).
LOSSES = tuple(o.name for o in OBJECTIVES if o.bound)
VECTOR_PRIORS = tuple(p.name for p in PRIORS if not p.code_prior and p.geometry == "flat")
JOBS = len(LOSSES) * len(VECTOR_PRIORS)


def test_every_objective_of_the_catalog_declares_its_terms_here():
    assert set(OBJECTIVE_TERMS) == set(LOSSES)


@pytest.fixture(scope="module")
def zoo_sweep(tmp_path_factory) -> Path:
    """Every objective x every prior, one sweep (in-process jobs: seconds each)."""
    cwd = tmp_path_factory.mktemp("zoo")
    sweep = cwd / "sweep"
    args = [
        "-m",
        *TINY,
        f"loss={','.join(LOSSES)}",
        f"prior={','.join(VECTOR_PRIORS)}",
        "trainer.nll_iw_every_epochs=1",
        f"hydra.sweep.dir={sweep}",
    ]
    # With each option's own defaults (family keys such as loss.k exist for one option only).
    proc = run_vae_train(args, cwd=cwd, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return sweep


def _jobs(sweep: Path) -> dict[tuple[str, str], Path]:
    out = {}
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        cfg = torch.load(job / "checkpoints" / "last.pt", weights_only=True)["config"]
        out[(cfg["loss"]["name"], cfg["prior"]["name"])] = job
    return out


def test_every_objective_trains_with_every_prior_and_logs_its_own_terms(zoo_sweep):
    jobs = _jobs(zoo_sweep)
    assert len(jobs) == JOBS
    for (loss, prior), job in jobs.items():
        metrics = json.loads((job / "metrics.json").read_text())
        for term in OBJECTIVE_TERMS[loss]:
            assert math.isfinite(metrics[f"test/{term}"]), (loss, prior, term)
            assert f"val/{term}" in metrics
        # An MC KL may dip below 0, the closed form not; HVAE's "kl" is the rest of its bound (momentum terms too).
        assert metrics["test/kl"] >= -1e-3 or prior != "normal" or loss == "hvae"
        assert math.isfinite(metrics["val/nll_iw"]) and metrics["val/nll_iw"] > 0
        events = load_events(job)
        tags = set(events.Tags()["scalars"])
        for term in OBJECTIVE_TERMS[loss]:
            assert f"train/{term}" in tags and f"val/{term}" in tags, (loss, term)
        assert scalar_steps(events, "val/loss")  # one point per epoch
    # The bound a reader compares across objectives is in every summary row.
    summary = (zoo_sweep / "summary.csv").read_text()
    assert summary.count("\n") == JOBS + 1 and "failed" not in summary


def test_iwae_bound_is_at_least_its_elbo_and_vamp_samples_come_from_its_components(zoo_sweep):
    jobs = _jobs(zoo_sweep)
    metrics = json.loads((jobs[("iwae", "normal")] / "metrics.json").read_text())
    assert metrics["test/iw_elbo"] >= metrics["test/elbo"] - 1e-3
    from vae_cli import load_run

    run = load_run(jobs[("elbo", "vamp")])
    prior = run.model.prior
    with torch.no_grad():
        mu, logvar, _ = prior.components()
        z = run.model.prior_sample(4000, torch.Generator().manual_seed(0))
    # Each sample lies near one of the pseudo-inputs' posteriors: its distance to the nearest component mean, in
    # that component's standard deviations, is what N(mu_k, sigma_k) gives, not what N(0, I) would.
    std = torch.exp(0.5 * logvar)
    nearest = (((z[:, None, :] - mu[None]) / std[None]) ** 2).sum(-1).min(dim=1).values
    assert nearest.median() < 2.0 * run.config.model.latent_dim


def test_vae_compare_ranks_a_sweep_of_variants(zoo_sweep, tmp_path):
    proc = tool("vae-compare", [str(zoo_sweep), "--metric", "val/nll_iw"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = (zoo_sweep / "compare.md").read_text()
    assert "loss" in table and "prior" in table and table.count("| ok |") == JOBS


@pytest.mark.parametrize("which", [("iwae", "vamp"), ("factor_vae", "mog")])
def test_vae_eval_and_vae_sample_work_for_variants(zoo_sweep, tmp_path, which):
    job = _jobs(zoo_sweep)[which]
    proc = tool("vae-eval", [str(job), "--k", "20"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((job / "eval.json").read_text())["test"]
    assert math.isfinite(result["nll_iw"]) and result["kl_per_dim"] is None  # no per-dimension KL for vamp/mog
    assert "Var[mu] per dimension" in proc.stdout
    out = tmp_path / "pics"
    sample = tool("vae-sample", [str(job), "--out", str(out), "--n", "16"], cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    assert {p.name for p in out.glob("*.png")} >= {"samples.png", "reconstructions.png", "traversals.png"}


def test_a_laplace_likelihood_trains_evaluates_and_samples(tmp_path):
    run = tmp_path / "run"
    run_vae_train(
        [*TINY, "likelihood=laplace", "likelihood.scale=learned", "dataset.dequantize=true", f"hydra.run.dir={run}"],
        cwd=tmp_path,
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["test/loss"]) and metrics["test/elbo"] == pytest.approx(-metrics["test/loss"])
    proc = tool("vae-eval", [str(run), "--k", "5"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run / "eval.json").read_text())["test"]
    assert math.isfinite(result["nll_iw"]) and "laplace density" in result["bits_per_dim_note"]
    sample = tool("vae-sample", [str(run), "--out", str(tmp_path / "pics"), "--n", "4"], cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr


@pytest.fixture(scope="module")
def cvae(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("cvae")
    run = cwd / "run"
    args = [*TINY, "trainer.epochs=5", "dataset.num_train=2048", "optim.lr=3e-3", "trainer.nll_iw_every_epochs=0"]
    run_vae_train([*args, "model.conditional=true", f"hydra.run.dir={run}"], cwd=cwd)
    return run


def test_a_cvae_samples_the_class_it_is_asked_for(cvae, tmp_path):
    pngs = {}
    for label in (2, 7):
        out = tmp_path / f"label{label}"
        proc = tool("vae-sample", [str(cvae), "--out", str(out), "--n", "16", "--label", str(label)], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        pngs[label] = (out / "samples.png").read_bytes()
    assert pngs[2] != pngs[7]  # the same seed, another label: other pictures
    refused = tool("vae-sample", [str(cvae), "--out", str(tmp_path / "x"), "--label", "11"], cwd=tmp_path)
    assert refused.returncode == 2 and "use 0 to 9" in refused.stderr
    # And the pictures are of that class: decoded with label c, the samples are nearest class c's mean image.
    from vae_cli import load_run

    run = load_run(cvae)
    test = run.split("test")
    means = torch.stack([test.images[test.labels == c].float().mean(0) / 255 for c in range(10)])
    z = run.model.prior_sample(200, torch.Generator().manual_seed(0))
    for c in range(10):
        with torch.no_grad():
            samples = run.model.likelihood.mean(run.model.decode(z, torch.full((200,), c)))
        distance = (samples.mean(0, keepdim=True) - means).pow(2).flatten(1).sum(1)
        assert int(distance.argmin()) == c, (c, distance)


def test_a_cvae_is_evaluated_as_log_p_x_given_y(cvae, tmp_path):
    """Right labels give a higher conditional likelihood than shuffled ones: the labels are really used."""
    from vae_cli import load_run
    from vae_cli.datasets import labelled_batches
    from vae_cli.evaluation.bounds import evaluate_images

    run = load_run(cvae)
    test = run.split("test")
    shuffled = test.labels[torch.randperm(len(test.labels), generator=torch.Generator().manual_seed(0))]
    right = evaluate_images(run.model, labelled_batches(test.images, test.labels, 64), k=20)
    wrong = evaluate_images(run.model, labelled_batches(test.images, (shuffled + 1) % 10, 64), k=20)
    assert right.log_px_iw > wrong.log_px_iw + 1.0
    proc = tool("vae-eval", [str(cvae), "--k", "20"], cwd=tmp_path)
    assert (
        proc.returncode == 0
        and abs(json.loads((cvae / "eval.json").read_text())["test"]["log_px_iw"] - right.log_px_iw) < 2.0
    )


def test_a_conditional_model_on_unlabelled_images_is_refused(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(40):
        Image.fromarray((torch.rand(8, 8) * 255).to(torch.uint8).numpy()).save(root / f"{i}.png")
    args = [
        "dataset=image_folder",
        f"dataset.root={root}",
        "dataset.channels=1",
        "dataset.image_size=8",
        "dataset.val_size=4",
        "model=mlp",
        "trainer.batch_size=8",
        "model.conditional=true",
    ]
    proc = run_vae_train(args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "needs class labels" in proc.stderr and "Traceback" not in proc.stderr


def _weights(run: Path) -> tuple[dict, dict]:
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return ckpt["model"], ckpt["objective"]


def test_factor_vae_resumes_bit_identically_discriminator_included(tmp_path):
    args = [*TINY, "trainer.epochs=3", "dataset.num_train=1280", "loss=factor_vae", "loss.disc_hidden=[64,64]"]
    run_vae_train([*args, f"hydra.run.dir={tmp_path / 'straight'}"], cwd=tmp_path)
    run = tmp_path / "run"
    stopped_mid_run_then_resumed(args, run, tmp_path, after="epoch 1/3", timeout=120)
    (ma, oa), (mb, ob) = _weights(tmp_path / "straight"), _weights(run)
    assert oa.keys() == ob.keys() and any(k.startswith("discriminator.") for k in oa)
    for a, b in ((ma, mb), (oa, ob)):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_rollback_restores_the_objectives_parameters_too(tmp_path):
    args = [*TINY, "trainer.epochs=1", "loss=factor_vae", "loss.disc_hidden=[32]"]
    run = tmp_path / "run"
    run_vae_train([*args, f"hydra.run.dir={run}"], cwd=tmp_path)
    proc = run_vae_train(
        [f"trainer.resume={run}", "trainer.epochs=3", "optim.lr=1e6", "trainer.nan_policy=rollback"],
        cwd=tmp_path,
        check=False,
    )
    text = proc.stdout + proc.stderr
    assert "rolled back" in text and "Traceback" not in text, text[-3000:]


def test_torchrun_trains_an_objective_with_parameters_of_its_own(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            vae_train_executable(),
            *TINY,
            "loss=factor_vae",
            "loss.disc_hidden=[32]",
            "prior=mog",
            "prior.components=4",
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
    assert math.isfinite(metrics["test/disc"]) and metrics["steps"] == 2 * 4  # half the batches per rank


def test_bf16_trains_a_variant_to_the_fp32_numbers(tmp_path):
    args = [*TINY, "loss=beta_tcvae", "prior=vamp", "prior.components=16", "trainer.nll_iw_every_epochs=0"]
    results = {}
    for precision in ("fp32", "bf16"):
        run = tmp_path / precision
        run_vae_train([*args, f"trainer.precision={precision}", f"hydra.run.dir={run}"], cwd=tmp_path)
        results[precision] = json.loads((run / "metrics.json").read_text())
    for term in ("loss", "elbo", "tc"):
        a, b = results["fp32"][f"test/{term}"], results["bf16"][f"test/{term}"]
        assert math.isfinite(b) and abs(a - b) < 0.02 * abs(a) + 0.5, (term, a, b)
