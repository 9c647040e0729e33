"""Model zoo II through the real commands: the hierarchical VAE (per-layer KL, the update guard, the weight average,
mid-epoch resume bit for bit, vae-eval and vae-sample), the 8-bit logistic mixture on a colour image folder, the
density likelihoods' bits/dim, the presets, and the refusals of combinations that cannot work."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import (
    DEBIAN_FASHION,
    REPO,
    need_path,
    run_tool,
    run_vae_train,
    stopped_mid_run_then_resumed,
)
from tests.e2e.events import load_events, scalar_steps

# The data and trainer part of TINY (its model keys belong to model=mlp).
SMALL = [
    "dataset=synthetic",
    "dataset.num_train=512",
    "dataset.num_test=96",
    "dataset.val_size=96",
    "trainer.batch_size=64",
    "trainer.log_every_steps=2",
    "trainer.num_images=16",
    "trainer.eval_batch_size=256",
    "trainer.latent_images=64",
]
HVAE = [
    "model=hvae",
    "model.widths=[4,8]",
    "model.blocks=1",
    "model.layers=2",
    "model.latent_channels=2",
    "loss.kl_warmup_steps=10",
    "loss.free_bits=0.05",
    "trainer.grad_clip=100",
    "trainer.skip_grad_norm=50",
    "trainer.ema_decay=0.9",
    "trainer.nll_iw_every_epochs=1",
    "trainer.nll_iw_k=4",
]


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.fixture(scope="module")
def hvae_runs(tmp_path_factory) -> tuple[Path, Path]:
    """The same 3-epoch hierarchical run twice: straight through, and stopped by Ctrl-C mid-epoch 2 then resumed."""
    cwd = tmp_path_factory.mktemp("hvae")
    args = [*SMALL, *HVAE, "trainer.epochs=3"]
    straight = cwd / "straight"
    run_vae_train([*args, f"hydra.run.dir={straight}"], cwd=cwd, timeout=600)
    resumed = cwd / "resumed"
    stopped_mid_run_then_resumed(args, resumed, cwd, after="epoch 1/3")  # stopped inside epoch 2
    return straight, resumed


def test_hvae_resumes_bit_for_bit_weights_average_and_guard_included(hvae_runs):
    straight, resumed = hvae_runs
    a, b = checkpoint(straight), checkpoint(resumed)
    for key in ("model", "ema_model"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["update_guard"] == b["update_guard"]
    # The average is not the trained weights: evaluation really uses something else.
    assert any(not torch.equal(a["model"][k], a["ema_model"][k]) for k in a["model"])


def test_hvae_logs_each_layers_kl_and_the_skipped_updates(hvae_runs):
    straight, _ = hvae_runs
    metrics = json.loads((straight / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        layers = metrics[f"{split}/kl_z1"] + metrics[f"{split}/kl_z2"]
        assert layers == pytest.approx(metrics[f"{split}/kl"], rel=1e-4, abs=1e-4)
    assert math.isfinite(metrics["val/nll_iw"])
    events = load_events(straight)
    tags = set(events.Tags()["scalars"])
    assert {"train/kl_z1", "train/kl_z2", "val/kl_z1", "train/skipped_updates"} <= tags
    skipped = [e.value for e in events.Scalars("train/skipped_updates")]
    assert skipped == sorted(skipped)  # a running count
    assert scalar_steps(events, "val/kl_z2")


def test_hvae_eval_and_sample_work_on_the_hierarchy(hvae_runs, tmp_path):
    _, run = hvae_runs
    proc = run_tool("vae-eval", [str(run), "--k", "20", "--num-images", "40"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "KL of layer z2" in proc.stdout and "40 images" in proc.stdout
    entry = json.loads((run / "eval.json").read_text())["test_first40"]
    assert entry["num_images"] == 40 and set(entry["kl_per_layer"]) == {"z1", "z2"}
    assert entry["nll_iw"] <= -entry["elbo"] + 1e-3  # IW-20 is at least as tight as the ELBO
    out = tmp_path / "pictures"
    proc = run_tool("vae-sample", [str(run), "--out", str(out), "--n", "16"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("samples.png", "reconstructions.png", "traversals.png", "interpolations_slerp.png"):
        assert Image.open(out / name).size[0] > 0


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colour") / "shapes"
    script = REPO / "benchmarks" / "make_colour_shapes.py"
    subprocess.run([sys.executable, str(script), "--out", str(root), "--n", "160", "--size", "16"], check=True)
    return root


def test_logistic_mixture_on_colour_images_reports_8_bit_bits_per_dim(colour_folder, tmp_path):
    run = tmp_path / "run"
    args = [
        "dataset=image_folder",
        f"dataset.root={colour_folder}",
        "dataset.image_size=16",
        "dataset.val_size=16",
        "model=resnet",
        "model.widths=[4,8]",
        "model.blocks=1",
        "model.latent_dim=8",
        "likelihood=logistic_mixture",
        "likelihood.components=3",
        "trainer.epochs=2",
        "trainer.batch_size=32",
        "trainer.nll_iw_every_epochs=1",
        "trainer.nll_iw_k=4",
        "trainer.latent_images=16",
        f"hydra.run.dir={run}",
    ]
    run_vae_train(args, cwd=tmp_path, timeout=600)
    proc = run_tool("vae-eval", [str(run), "--k", "8"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((run / "eval.json").read_text())["test"]
    dims = 3 * 16 * 16
    assert entry["num_pixels"] == dims
    assert entry["bits_per_dim"] == pytest.approx(entry["nll_iw"] / (dims * math.log(2)), rel=1e-9)
    assert 0 < entry["bits_per_dim"] < 12  # a few steps of training: near the 8 bits of a uniform model
    assert "probability of the 8-bit pixel values" in entry["bits_per_dim_note"]
    tags = set(load_events(run).Tags()["scalars"])
    assert "val/bits_per_dim" in tags


def test_density_likelihoods_report_bits_on_the_8_bit_scale(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *SMALL,
        "model.hidden_dims=[32]",
        "model.latent_dim=4",
        "dataset.dequantize=true",
        "likelihood=gaussian",
        "likelihood.std=learned,learned_global,0.1",
        "trainer.epochs=1",
        f"hydra.sweep.dir={sweep}",
    ]
    run_vae_train(args, cwd=tmp_path, timeout=600)
    run_vae_train(
        [
            *SMALL,
            *("model.hidden_dims=[32]", "model.latent_dim=4", "dataset.dequantize=true"),
            *("likelihood=continuous_bernoulli", "trainer.epochs=1", f"hydra.run.dir={sweep / 'cb'}"),
        ],
        cwd=tmp_path,
        timeout=600,
    )
    for job in ("0", "1", "2", "cb"):
        proc = run_tool("vae-eval", [str(sweep / job), "--k", "8"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        entry = json.loads((sweep / job / "eval.json").read_text())["test"]
        expected = entry["nll_iw"] / (entry["num_pixels"] * math.log(2)) + math.log2(255)
        assert entry["bits_per_dim"] == pytest.approx(expected, rel=1e-9), job
        assert "log2(255)" in entry["bits_per_dim_note"]
    learned = checkpoint(sweep / "1")["model"]
    assert "likelihood.raw_std" in learned  # learned_global: one σ, saved with the model
    # learned (per pixel): the decoder outputs mean and σ for each of the 784 pixels.
    assert checkpoint(sweep / "0")["model"]["decoder.net.2.weight"].shape[0] == 2 * 784


PRESETS = ["fmnist_mlp", "fmnist_resnet", "fmnist_hvae", "fmnist_cb", "colour_logistic"]


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_composes_and_states_its_command_and_result(preset, tmp_path):
    text = (REPO / "configs" / "experiment" / f"{preset}.yaml").read_text()
    assert f"vae-train experiment={preset}" in text.splitlines()[1]
    assert "# Result:" in text and "RESULT_" not in text
    proc = run_vae_train([f"experiment={preset}", "--cfg", "job"], cwd=tmp_path)
    arch = {"fmnist_resnet": "resnet", "fmnist_hvae": "hvae", "colour_logistic": "resnet"}.get(preset, "mlp")
    assert f"arch: {arch}" in proc.stdout


def test_the_hierarchical_preset_trains_on_a_slice_of_fashion_mnist(tmp_path):
    need_path(DEBIAN_FASHION / "train-images-idx3-ubyte.gz", "Debian's dataset-fashion-mnist")
    run = tmp_path / "run"
    args = [
        "experiment=fmnist_hvae",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.subset=256",
        "dataset.val_size=64",
        "model.widths=[4,8,8]",
        "trainer.epochs=1",
        "trainer.batch_size=64",
        "trainer.nll_iw_k=2",
        "trainer.latent_images=32",
        f"hydra.run.dir={run}",
    ]
    run_vae_train(args, cwd=tmp_path, timeout=600)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/kl_z1", "test/kl_z2", "test/kl_z3"} <= metrics.keys()
    assert math.isfinite(metrics["val/nll_iw"]) and metrics["val/nll_iw"] > 0


REFUSED = [
    (["likelihood=logistic_mixture", "dataset.dequantize=true"], "dataset.dequantize=true moves them off the levels"),
    (["likelihood=logistic_mixture", "dataset.binarize=dynamic"], "use likelihood=bernoulli for binary data"),
    (["likelihood=continuous_bernoulli", "dataset.binarize=dynamic"], "on binarized data"),
    (["likelihood=gaussian", "likelihood.std=big"], "likelihood.std must be a number"),
    (["likelihood.std=0.1"], "likelihood.std is a key of likelihood=gaussian"),
    (["model.layers=3"], "model.layers is a key of model=hvae"),
    (["model=hvae", "loss=beta_tcvae"], "loss=beta_tcvae works on the aggregate posterior"),
    (["model=hvae", "prior=vamp"], "model=hvae brings its own hierarchical prior"),
    (["model=hvae", "loss=iwae", "loss.estimator=dreg"], "loss.estimator=dreg needs a one-layer posterior"),
    (["model=hvae", "model.conditional=true"], "model=hvae has no conditional"),
    (["model=resnet", "model.widths=[8,8,8,8]"], "needs dataset.image_size divisible by 8"),
    (["model=resnet", "model.hidden_dims=[10]"], "model.hidden_dims is a key of model=mlp"),
    (["dataset=cifar10", "model.conv_channels=[8,16]", "model.hidden_dims=[4]"], "model.hidden_dims is a key of"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_combinations_that_cannot_work_are_refused_before_anything_runs(args, message, tmp_path):
    full = args if any(a.startswith("dataset=") for a in args) else [*args, "dataset=synthetic"]
    proc = run_vae_train(full, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "outputs").glob("*/*"))  # no run directory left behind
