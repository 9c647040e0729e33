"""Zoo IV through the real commands: the autoencoders without a likelihood bound (loss=ae, wae, rae, aae) and
likelihood=msssim train, resume bit-identically, evaluate (reconstruction, never an IW "likelihood"), get samplers
fitted to their codes (vae-fit-sampler), sample through them (vae-sample), are scored by sample quality (vae-eval
--samples) and ranked by it (vae-compare --eval --metric sample/fid)."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, run_vae_train, stopped_mid_run_then_resumed, vae_train_executable
from tests.e2e.events import load_events, scalar_values
from vae_cli.config.catalog import OBJECTIVES

POINT_ENCODERS = tuple(o.name for o in OBJECTIVES if not o.bound)
TERMS = {
    "ae": ("loss", "recon"),
    "wae": ("loss", "recon", "mmd"),
    "rae": ("loss", "recon", "embedding", "decoder_reg"),
    "aae": ("loss", "recon", "gen", "disc", "disc_acc"),
}
# The sweep: every autoencoder without a bound, and VAE-GAN (a VAE, with a bound) beside them.
LOSSES = (*POINT_ENCODERS, "vaegan")
VAEGAN_TERMS = ("loss", "recon", "kl", "pixel_recon", "elbo", "gen", "disc", "disc_acc")


def tool(name: str, args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    exe = Path(vae_train_executable()).parent / name
    env = {**os.environ, "VAE_CLI_CACHE": str(cache)}  # the feature network's cache: this test's own
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def test_every_autoencoder_of_the_catalog_is_listed_here():
    assert set(TERMS) == set(POINT_ENCODERS)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("zoo4")
    out = cwd / "sweep"
    args = ["-m", *TINY, f"loss={','.join(LOSSES)}", f"hydra.sweep.dir={out}"]
    proc = run_vae_train(args, cwd=cwd, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def jobs(sweep: Path) -> dict[str, Path]:
    out = {}
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        cfg = torch.load(job / "checkpoints" / "last.pt", weights_only=True)["config"]
        out[cfg["loss"]["name"]] = job
    return out


def test_each_trains_and_logs_its_terms_and_only_vaegan_a_likelihood_bound(sweep):
    found = jobs(sweep)
    assert set(found) == set(LOSSES)
    for loss, job in found.items():
        metrics = json.loads((job / "metrics.json").read_text())
        terms = TERMS.get(loss, VAEGAN_TERMS)
        for term in terms:
            assert math.isfinite(metrics[f"test/{term}"]), (loss, term)
        tags = set(load_events(job).Tags()["scalars"])
        assert {f"train/{t}" for t in terms} <= tags
        bound = loss == "vaegan"
        assert ("val/nll_iw" in metrics) == bound and ("val/nll_iw" in tags) == bound, loss
    summary = (sweep / "summary.csv").read_text()
    assert "failed" not in summary
    # best.pt: the adversarial objectives select on the term that means the same across epochs.
    for loss, term, pick in (("aae", "val/recon", min), ("vaegan", "val/elbo", max), ("wae", "val/loss", min)):
        history = [json.loads(line) for line in (found[loss] / "history.jsonl").read_text().splitlines()]
        best = pick(history, key=lambda row, term=term: row[term])
        assert json.loads((found[loss] / "metrics.json").read_text())["best_epoch"] == best["epoch"], loss


def test_vae_eval_reports_reconstruction_and_says_why_there_is_no_bound(sweep, tmp_path):
    job = jobs(sweep)["wae"]
    proc = tool("vae-eval", [str(job)], tmp_path, tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "No likelihood bound: loss=wae" in proc.stdout and "IW" not in proc.stdout.split("No likelihood")[0]
    entry = json.loads((job / "eval.json").read_text())["test"]
    assert "nll_iw" not in entry and 0 < entry["mse"] < 1 and math.isfinite(entry["recon"])
    # The MSE written is the decoder mean's squared error, computed here independently.
    from vae_cli import load_run

    run = load_run(job)
    images = run.split("test").images.float() / 255
    with torch.no_grad():
        mean = run.model.likelihood.mean(run.model.decode(run.model.encode(images)[0]))
    assert entry["mse"] == pytest.approx(float((mean - images).pow(2).mean()), rel=1e-5)


def test_samplers_fit_sample_score_and_refuse_what_they_must(sweep, tmp_path):
    job, cache = jobs(sweep)["rae"], tmp_path / "cache"
    fit = tool("vae-fit-sampler", [str(job), "--sampler", "gmm", "--components", "3"], tmp_path, cache)
    assert fit.returncode == 0, fit.stderr
    saved = job / "samplers" / "gmm.pt"
    record = torch.load(saved, weights_only=True)
    assert (
        record["fitted_on"]["num_codes"] == 640 - 128
    )  # num_train less the val split and record["config"]["components"] == 3
    # The same seed refits the same sampler; an existing key is kept, unless --replace (which moves it aside).
    again = tool(
        "vae-fit-sampler", [str(job), "--sampler", "gmm", "--components", "3", "--key", "gmm_b"], tmp_path, cache
    )
    assert again.returncode == 0, again.stderr
    other = torch.load(job / "samplers" / "gmm_b.pt", weights_only=True)
    assert all(torch.equal(record["state"][k], other["state"][k]) for k in record["state"])
    before = saved.read_bytes()
    refused = tool("vae-fit-sampler", [str(job), "--sampler", "gmm"], tmp_path, cache)
    assert refused.returncode == 2 and "--replace" in refused.stderr and "Traceback" not in refused.stderr
    assert saved.read_bytes() == before
    # Samples through it, and through the prior: two different pictures.
    for sampler, out in (("gmm", tmp_path / "gmm"), ("prior", tmp_path / "prior")):
        pics = tool("vae-sample", [str(job), "--sampler", sampler, "--out", str(out), "--n", "16"], tmp_path, cache)
        assert pics.returncode == 0, pics.stderr
    assert (tmp_path / "gmm" / "samples.png").read_bytes() != (tmp_path / "prior" / "samples.png").read_bytes()
    # Sample quality, into eval.json and TensorBoard.
    scored = tool("vae-eval", [str(job), "--samples", "200", "--sampler", "gmm"], tmp_path, cache)
    assert scored.returncode == 0, scored.stderr
    assert "not comparable with published" in scored.stdout
    entry = json.loads((job / "eval.json").read_text())["samples_gmm"]
    assert entry["num_samples"] == 200 and entry["feature_network"].startswith("vae-cli-classifier:synthetic:")
    assert math.isfinite(entry["fid"]) and 0 <= entry["precision"] <= 1 and 0 <= entry["recall"] <= 1
    assert scalar_values(load_events(job), "sample_gmm/fid")[-1] == pytest.approx(entry["fid"], rel=1e-5)
    # A sampler whose tensors changed after it was written is refused, with the way out; so is a file that is no
    # sampler at all.
    edited = torch.load(saved, weights_only=True)
    edited["state"]["means"][0, 0] += 1.0
    torch.save(edited, saved)
    damaged = tool("vae-eval", [str(job), "--samples", "200", "--sampler", "gmm", "--no-write"], tmp_path, cache)
    assert damaged.returncode == 2 and "--replace" in damaged.stderr and "Traceback" not in damaged.stderr
    saved.write_bytes(b"not a sampler")
    damaged = tool("vae-eval", [str(job), "--samples", "200", "--sampler", "gmm", "--no-write"], tmp_path, cache)
    assert damaged.returncode == 2 and "damaged" in damaged.stderr and "Traceback" not in damaged.stderr
    replaced = tool(
        "vae-fit-sampler", [str(job), "--sampler", "gmm", "--components", "3", "--replace"], tmp_path, cache
    )
    assert replaced.returncode == 0, replaced.stderr
    assert len(list((job / "samplers" / "old").glob("gmm-*.pt"))) == 1
    # An unknown key says which exist and how to fit one.
    missing = tool("vae-sample", [str(job), "--sampler", "flow", "--out", str(tmp_path / "x")], tmp_path, cache)
    assert missing.returncode == 2 and "vae-fit-sampler" in missing.stderr and "gmm" in missing.stderr


def test_vae_compare_ranks_the_sweep_by_sample_quality(sweep, tmp_path):
    proc = tool(
        "vae-compare",
        [str(sweep), "--eval", "--metric", "sample_gmm/fid", "--samples", "200"],
        tmp_path,
        tmp_path / "c",
    )
    assert proc.returncode == 0, proc.stderr
    table = (sweep / "compare.md").read_text()
    assert "Ranked by sample_gmm/fid (lower is better)" in table and table.count("| ok |") == len(LOSSES)
    assert "sample_gmm/precision" in (sweep / "summary.csv").read_text().splitlines()[0]
    for job in jobs(sweep).values():  # each got its GMM fitted first
        assert (job / "samplers" / "gmm.pt").is_file()


@pytest.mark.parametrize(
    "variant",
    [
        ["loss=aae", "loss.disc_hidden=[32,32]"],
        ["loss=vaegan", "loss.disc_channels=[8,16]", "loss.feature_layer=2"],
        ["loss=rae", "loss.regularizer=spectral"],  # the power iteration's vectors are state too
        ["loss=wae"],  # prior draws every step, from the restored RNG
        ["loss=ae"],
        ["loss=rae", "loss.regularizer=gp"],  # a random probe every step
        ["likelihood=msssim", "likelihood.scales=2"],
    ],
)
def test_the_new_objectives_resume_bit_identically(tmp_path, variant):
    args = [*TINY, "trainer.epochs=3", "dataset.num_train=1280", *variant]
    run_vae_train([*args, f"hydra.run.dir={tmp_path / 'straight'}"], cwd=tmp_path)
    run = tmp_path / "run"
    stopped_mid_run_then_resumed(args, run, tmp_path, after="epoch 1/3", timeout=120)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    if "loss=aae" in variant or "loss=vaegan" in variant:
        assert any(k.startswith("discriminator.") for k in a["objective"])
    if "loss.regularizer=spectral" in variant:
        assert any("parametrizations" in k for k in a["model"])
    for part in ("model", "objective"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


@pytest.mark.parametrize(
    "extra",
    [
        ["loss=rae", "loss.regularizer=gp"],
        ["loss=rae", "loss.regularizer=spectral"],
        ["likelihood=msssim", "likelihood.scales=2"],
        ["loss=vaegan", "loss.disc_channels=[8,16]", "loss.feature_layer=2"],
    ],
)
def test_the_other_variants_train_and_evaluate(tmp_path, extra):
    run = tmp_path / "run"
    run_vae_train([*TINY, *extra, f"hydra.run.dir={run}"], cwd=tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["test/loss"])
    proc = tool("vae-eval", [str(run), "--k", "5"], tmp_path, tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    bound = "nll_iw" in json.loads((run / "eval.json").read_text())["test"]
    assert bound == (extra[0] == "loss=vaegan")  # rae: a point encoder; msssim: a score; vaegan: a VAE


def test_a_sweep_metric_a_model_without_a_bound_never_writes_is_refused(tmp_path):
    run = tmp_path / "r"
    proc = run_vae_train(
        [*TINY, "loss=ae", "trainer.sweep_metric=val/nll_iw", f"hydra.run.dir={run}"], cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "trainer.sweep_metric=val/nll_iw" in proc.stderr
    assert "No likelihood bound" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run / "checkpoints").exists()


def test_a_gradient_penalty_under_torch_compile_is_refused_before_training(tmp_path):
    proc = run_vae_train(
        [*TINY, "loss=rae", "loss.regularizer=gp", "trainer.compile=true", f"hydra.run.dir={tmp_path / 'r'}"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "double backward" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()
