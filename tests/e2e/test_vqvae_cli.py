"""VQ-VAE and its PixelCNN prior through the real commands: two plain vae-train runs, each resuming bit for bit;
vae-eval's code statistics and bound; vae-sample's samples (and its refusal for a VQ-VAE without a prior); the
likelihoods in a sweep; torchrun; and the refusals."""

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

from tests.conftest import run_tool, run_vae_train, stopped_mid_run_then_resumed, vae_train_executable
from tests.e2e.events import load_events

DATA = [
    "dataset=synthetic",
    "dataset.num_train=512",
    "dataset.num_test=96",
    "dataset.val_size=96",
    "trainer.batch_size=64",
    "trainer.log_every_steps=2",
    "trainer.num_images=16",
    "trainer.latent_images=64",
    "trainer.nll_iw_every_epochs=1",
]
VQ = ["model=vqvae", "model.widths=[4,8,8]", "model.blocks=1", "model.codebook_size=32", "model.code_dim=8"]
PRIOR = ["prior.layers=6", "prior.channels=16"]


def last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, Path]:
    """Stage 1 (the VQ-VAE, EMA codebook) and stage 2 (its PixelCNN prior), each straight and interrupted+resumed."""
    cwd = tmp_path_factory.mktemp("vq")
    runs = {name: cwd / name for name in ("vq", "vq_resumed", "prior", "prior_resumed")}
    stage1 = [*DATA, *VQ, "model.ema=true", "trainer.epochs=3"]
    run_vae_train([*stage1, f"hydra.run.dir={runs['vq']}"], cwd=cwd, timeout=600)
    stopped_mid_run_then_resumed(stage1, runs["vq_resumed"], cwd, after="epoch 1/3")
    stage2 = ["prior=pixelcnn", f"prior.vqvae={runs['vq']}", *PRIOR, "trainer.epochs=3", "trainer.batch_size=64"]
    run_vae_train([*stage2, f"hydra.run.dir={runs['prior']}"], cwd=cwd, timeout=600)
    stopped_mid_run_then_resumed(stage2, runs["prior_resumed"], cwd, after="epoch 1/3")
    return runs


def test_both_stages_resume_bit_for_bit(stages):
    for straight, resumed in (("vq", "vq_resumed"), ("prior", "prior_resumed")):
        a, b = last(stages[straight])["model"], last(stages[resumed])["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), straight
    assert "quantizer.cluster_size" in last(stages["vq"])["model"]  # the EMA state resumes too


def test_the_prior_run_knows_its_vqvae_and_keeps_it_frozen(stages):
    ckpt = last(stages["prior"])
    info = ckpt["model_info"]["vqvae"]
    assert Path(info["path"]).parent.parent == stages["vq"] and len(info["digest"]) == 64
    assert ckpt["config"]["model"]["arch"] == "vqvae" and ckpt["config"]["dataset"]["name"] == "synthetic"
    vq = torch.load(stages["vq"] / "checkpoints" / "best.pt", weights_only=True)["model"]
    for key, value in vq.items():
        assert torch.equal(ckpt["model"][key], value), key  # the encoder, codebook and decoder as the VQ-VAE left them
    assert any(k.startswith("prior.") for k in ckpt["model"])


def test_stage_one_logs_codebook_health_and_no_sample_grid(stages):
    run = stages["vq"]
    events = load_events(run)
    scalars = set(events.Tags()["scalars"])
    assert {"train/commitment", "train/perplexity", "train/codes_used", "val/perplexity"} <= scalars
    assert "train/codebook" not in scalars  # EMA codebook: no codebook loss
    assert "latent/code_usage" in events.Tags()["histograms"]
    assert not list((run / "images").glob("images_samples_*"))  # uniform codes are noise, not samples
    assert list((run / "images").glob("images_reconstructions_*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert 1 <= metrics["val/perplexity"] <= 32 and 0 < metrics["val/codes_used"] <= 1


def test_vae_eval_reports_code_usage_the_prior_nll_and_a_tighter_bound(stages, tmp_path):
    results = {}
    for name in ("vq", "prior"):
        proc = run_tool("vae-eval", [str(stages[name])], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "codebook perplexity" in proc.stdout and "-log p(x) <=" in proc.stdout
        results[name] = json.loads((stages[name] / "eval.json").read_text())["test"]
    vq, prior = results["vq"], results["prior"]
    grid = 7 * 7
    assert vq["kl"] == pytest.approx(grid * math.log(32), rel=1e-6)  # the uniform prior's h w log K
    assert vq["k"] == 1 and vq["codebook"]["codebook_size"] == 32 and sum(vq["codebook"]["counts"]) == 96 * grid
    assert prior["recon"] == pytest.approx(vq["recon"], rel=1e-5)  # the same frozen VQ-VAE
    assert prior["kl"] < vq["kl"] and prior["nll_iw"] < vq["nll_iw"]  # the learned prior tightens the bound
    assert prior["nll_iw"] == pytest.approx(prior["recon"] + prior["kl"], rel=1e-6)


def test_vae_sample_needs_a_prior_and_draws_through_it(stages, tmp_path):
    proc = run_tool("vae-sample", [str(stages["vq"]), "--out", str(tmp_path / "none")], cwd=tmp_path)
    assert (
        proc.returncode == 2
        and "vae-train prior=pixelcnn prior.vqvae=" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert not (tmp_path / "none").exists()
    for run, extra, out in ((stages["prior"], [], "prior"), (stages["vq"], ["--uniform-codes"], "uniform")):
        proc = run_tool(
            "vae-sample",
            [str(run), "--out", str(tmp_path / out), "--n", "16", "--temperature", "0.9", *extra],
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert Image.open(tmp_path / out / "samples.png").size[0] > 0


def test_every_likelihood_reconstructs_through_the_codes_in_one_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *DATA,
        *VQ,
        "likelihood=bernoulli,gaussian,logistic_mixture",
        "trainer.epochs=1",
        f"hydra.sweep.dir={sweep}",
    ]
    run_vae_train(args, cwd=tmp_path, timeout=600)
    for job in ("0", "1", "2"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert math.isfinite(metrics["test/recon"]) and "test/codebook" in metrics
    assert (sweep / "summary.md").read_text().count("| ok") == 3


def test_a_vqvae_trains_under_torchrun_with_an_ema_codebook(tmp_path):
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", vae_train_executable()]
    args = [*DATA, *VQ, "model.ema=true", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run([*cmd, *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert math.isfinite(metrics["test/loss"]) and metrics["steps"] == 4  # 512 images, 2 ranks x 64 per step


REFUSED = [
    (["prior=pixelcnn"], "name its run with prior.vqvae=RUN"),
    ([*VQ, "loss=iwae"], "model=vqvae trains with loss=elbo"),
    ([*VQ, "prior=vamp"], "prior=vamp is for the Gaussian latents"),
    ([*VQ, "loss.free_bits=0.5"], "reshape a KL that is constant for model=vqvae"),
    ([*VQ, "model.codebook_size=1"], "model.codebook_size must be in [2, 65536]"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_impossible_vq_setups_are_refused(args, message, tmp_path):
    proc = run_vae_train([*args, "dataset=synthetic"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr


def test_a_prior_for_a_run_that_is_not_a_vqvae_or_with_its_keys_changed_is_refused(stages, tmp_path):
    plain = tmp_path / "plain"
    run_vae_train(
        [
            "dataset=synthetic",
            "dataset.num_train=512",
            "dataset.val_size=64",
            "trainer.epochs=1",
            f"hydra.run.dir={plain}",
        ],
        cwd=tmp_path,
    )
    cases = [
        (["prior=pixelcnn", f"prior.vqvae={plain}"], "is a model=mlp run, not a VQ-VAE"),
        (["prior=pixelcnn", f"prior.vqvae={stages['prior']}"], "is itself a prior's run"),
        (
            ["prior=pixelcnn", f"prior.vqvae={stages['vq']}", "model.codebook_size=64"],
            "cannot be given with prior=pixelcnn",
        ),
        (["prior=pixelcnn", f"prior.vqvae={stages['vq']}", "dataset.num_train=100"], "would change the images"),
    ]
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    cases.append((["prior=pixelcnn", f"prior.vqvae={text}"], f"prior.vqvae={text}: Refused to load"))
    for args, message in cases:
        proc = run_vae_train(args, cwd=tmp_path, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr, proc.stderr
    # A VQ-VAE still training (its directory locked by the vae-train that writes it): its best.pt can change.
    from vae_cli.process.locks import DirLock

    lock = DirLock(stages["vq"])
    assert lock.acquire()
    try:
        proc = run_vae_train(["prior=pixelcnn", f"prior.vqvae={stages['vq']}"], cwd=tmp_path, check=False)
    finally:
        lock.release()
    assert proc.returncode == 2 and "is still training" in proc.stderr and "Traceback" not in proc.stderr


def test_bf16_and_vae_compare_work_on_a_vqvae_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *DATA, *VQ, "trainer.epochs=2", "trainer.precision=fp32,bf16", f"hydra.sweep.dir={sweep}"]
    run_vae_train(args, cwd=tmp_path, timeout=600)
    fp32, bf16 = (json.loads((sweep / job / "metrics.json").read_text()) for job in ("0", "1"))
    assert math.isfinite(bf16["test/recon"]) and bf16["test/recon"] == pytest.approx(fp32["test/recon"], rel=0.1)
    assert 1 <= bf16["val/perplexity"] <= 32
    compare = run_tool("vae-compare", [str(sweep), "--metric", "val/recon"], tmp_path)
    assert compare.returncode == 0, compare.stderr
    assert "trainer.precision" in compare.stdout and "bf16" in compare.stdout and "Traceback" not in compare.stderr


def test_a_diverging_vqvae_is_rolled_back_like_any_run(tmp_path):
    run = tmp_path / "run"
    run_vae_train([*DATA, *VQ, "model.ema=true", "trainer.epochs=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    proc = run_vae_train(
        [f"trainer.resume={run}", "trainer.epochs=3", "optim.lr=1e6", "trainer.nan_policy=rollback"],
        cwd=tmp_path,
        check=False,
    )
    text = proc.stdout + proc.stderr
    assert "rolled back" in text and "Traceback" not in text, text[-3000:]
    assert all(torch.isfinite(t).all() for t in last(run)["model"].values() if t.is_floating_point())
