"""Disentanglement end to end: factor datasets through vae-train, the metrics in TensorBoard and metrics.json,
vae-eval --disentanglement, a sweep ranked by a metric, an image folder with a factors CSV, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_tool, run_vae_train
from tests.e2e.events import load_events, scalar_steps, scalar_values

SHAPES_TINY = [
    "dataset=shapes2d",
    "model=mlp",
    "dataset.num_train=1200",
    "dataset.num_test=200",
    "dataset.val_size=200",
    "model.hidden_dims=[64]",
    "model.latent_dim=4",
    "trainer.epochs=2",
    "trainer.batch_size=100",
    "trainer.num_images=16",
    "trainer.latent_images=200",
    "trainer.nll_iw_every_epochs=0",
    "trainer.embedding=false",
    "trainer.progress=none",
]
# Small enough for seconds, large enough for every metric to run its whole procedure.
METRICS_TINY = [
    "disentanglement.metrics=[mig,sap,factor_vae,beta_vae]",
    "disentanglement.mig.num_train=600",
    "disentanglement.sap.num_train=300",
    "disentanglement.sap.num_test=200",
    "disentanglement.factor_vae.batch_size=16",
    "disentanglement.factor_vae.num_train=60",
    "disentanglement.factor_vae.num_eval=40",
    "disentanglement.factor_vae.num_variance_estimate=300",
    "disentanglement.beta_vae.batch_size=16",
    "disentanglement.beta_vae.num_train=60",
    "disentanglement.beta_vae.num_eval=40",
]
TAGS = ("mig", "sap", "factor_vae_score", "beta_vae_score")


def as_sets(*settings: str) -> list[str]:
    """vae-eval's ``--set KEY=VALUE`` arguments for each setting."""
    return [a for setting in settings for a in ("--set", setting)]


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dis")
    run = root / "run"
    run_vae_train([*SHAPES_TINY, *METRICS_TINY, "disentanglement.every_epochs=1", f"hydra.run.dir={run}"], cwd=root)
    return run


def test_training_logs_the_metrics_every_epoch_and_keeps_the_last_in_metrics_json(scored_run):
    acc = load_events(scored_run)
    metrics = json.loads((scored_run / "metrics.json").read_text())
    steps = sorted({s for tag in TAGS for s in scalar_steps(acc, f"disentanglement/{tag}")})
    assert len(steps) == 2 and steps[-1] == metrics["steps"]  # after each of the two epochs
    for tag in TAGS:
        values = scalar_values(acc, f"disentanglement/{tag}")
        assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values), tag
        assert metrics[f"disentanglement/{tag}"] == pytest.approx(values[-1], abs=1e-6)
    assert "disentanglement after epoch 2" in (scored_run / "vae-train.log").read_text()


def test_vae_eval_scores_the_run_again_to_the_same_numbers_and_records_them(scored_run, tmp_path):
    proc = run_tool("vae-eval", [str(scored_run), "--disentanglement", "--checkpoint", "last"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "MIG" in proc.stdout and "BetaVAE score" in proc.stdout
    entry = json.loads((scored_run / "eval.json").read_text())["disentanglement"]
    trained = json.loads((scored_run / "metrics.json").read_text())
    for tag in TAGS:  # the same config, seed and weights give the same numbers in another process
        assert entry["scores"][f"disentanglement/{tag}"] == pytest.approx(trained[f"disentanglement/{tag}"], abs=1e-9)
    config = entry["provenance"]["mig"]["config"]  # each metric says what it was computed with
    assert config["seed"] == 0 and config["mig"]["num_train"] == 600 and entry["provenance"]["mig"]["epoch"] == 2
    assert config["factor_vae"]["batch_size"] == 16 and entry["representation"] == "mean of q(z|x)"
    assert len(entry["details"]["mig"]["per_factor"]) == 5

    # DCI, with sizes changed on the command line; recorded as what was asked.
    proc = run_tool(
        "vae-eval",
        [
            str(scored_run),
            "--disentanglement",
            *as_sets("metrics=[dci]", "dci.num_train=150", "dci.num_test=100", "seed=3"),
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((scored_run / "eval.json").read_text())["disentanglement"]
    config = entry["provenance"]["dci"]["config"]
    assert config["seed"] == 3 and config["dci"]["num_train"] == 150
    assert entry["provenance"]["mig"]["config"]["seed"] == 0  # the other metrics keep what they were computed with
    importance = np.array(entry["details"]["dci"]["importance"])
    assert importance.shape == (4, 5)  # latent dims x factors
    for key in ("dci_disentanglement", "dci_completeness", "dci_informativeness_test"):
        assert 0.0 <= entry["scores"][f"disentanglement/{key}"] <= 1.0
    acc = load_events(scored_run)
    assert scalar_steps(acc, "disentanglement/dci_disentanglement") == [
        json.loads((scored_run / "metrics.json").read_text())["steps"]
    ]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "bogus=1"], "bogus"),
        (["--set", "metrics=[nope]"], "unknown ['nope']"),
        (["--set", "mig.num_train=1"], "must be >= 2"),
        (["--set", "dci.num_train"], "KEY=VALUE"),
    ],
)
def test_bad_metric_settings_get_one_clear_message(scored_run, tmp_path, args, message):
    before = (scored_run / "eval.json").read_bytes() if (scored_run / "eval.json").exists() else None
    proc = run_tool("vae-eval", [str(scored_run), "--disentanglement", *args], cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    after = (scored_run / "eval.json").read_bytes() if (scored_run / "eval.json").exists() else None
    assert before == after


def test_datasets_without_factors_and_missing_dsprites_are_refused_clearly(tmp_path):
    from tests.conftest import TINY

    proc = run_vae_train([*TINY, "disentanglement.every_epochs=1"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "needs ground-truth factors" in proc.stderr and "Traceback" not in proc.stderr
    run = tmp_path / "plain"
    run_vae_train([*TINY, "trainer.epochs=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    proc = run_tool("vae-eval", [str(run), "--disentanglement"], cwd=tmp_path)
    assert proc.returncode == 2 and "has no ground-truth factors" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_vae_train(
        ["dataset=dsprites", f"dataset.root={tmp_path / 'empty'}", "trainer.epochs=1"], cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "dataset.download=true" in proc.stderr and "Traceback" not in proc.stderr


def test_a_sweep_of_objectives_is_ranked_by_a_disentanglement_metric(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_vae_train(
        [
            "-m",
            *SHAPES_TINY,
            *METRICS_TINY,
            "trainer.epochs=1",
            "loss=elbo,beta_tcvae,factor_vae",
            "loss.beta=1,4",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0
    assert len([p for p in sweep.iterdir() if p.name.isdigit()]) == 6
    proc = run_tool("vae-compare", [str(sweep), "--disentanglement", "--metric", "disentanglement/mig"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 6 and all(r["disentanglement/mig"] != "" for r in rows)
    ranked = list(csv.DictReader((sweep / "compare.csv").open()))
    values = [float(r["disentanglement/mig"]) for r in ranked]
    assert values == sorted(values, reverse=True)  # higher is better
    assert "higher is better" in (sweep / "compare.md").read_text()
    for job in range(6):  # each job's own scoring is in its eval.json
        entry = json.loads((sweep / str(job) / "eval.json").read_text())["disentanglement"]
        assert entry["scores"]["disentanglement/mig"] == pytest.approx(
            float(rows[job]["disentanglement/mig"]), abs=1e-3
        )


def test_an_image_folder_with_a_factors_csv_is_scored(tmp_path):
    folder = tmp_path / "squares"
    folder.mkdir()
    rows = []
    for x in range(8):
        for y in range(8):
            for size in (3, 5):
                image = np.zeros((16, 16), dtype=np.uint8)
                image[y : y + size, x : x + size] = 255
                name = f"sq_{x}_{y}_{size}.png"
                Image.fromarray(image).save(folder / name)
                rows.append(f"{name},{x},{y},{size}")
    (folder / "factors.csv").write_text("file,x,y,size\n" + "\n".join(rows) + "\n")
    run = tmp_path / "run"
    run_vae_train(
        [
            "dataset=image_folder",
            "model=mlp",
            f"dataset.root={folder}",
            "dataset.image_size=16",
            "dataset.val_size=16",
            "dataset.factors_csv=factors.csv",
            "model.hidden_dims=[32]",
            "model.latent_dim=3",
            "trainer.epochs=1",
            "trainer.batch_size=16",
            "trainer.num_images=8",
            "trainer.progress=none",
            "trainer.embedding=false",
            "trainer.nll_iw_every_epochs=0",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
    )
    args = [
        str(run),
        "--disentanglement",
        *as_sets(
            "metrics=[mig,factor_vae,beta_vae]",
            "mig.num_train=300",
            "factor_vae.batch_size=8",
            "factor_vae.num_train=40",
            "factor_vae.num_eval=20",
            "factor_vae.num_variance_estimate=100",
            "beta_vae.batch_size=8",
            "beta_vae.num_train=40",
            "beta_vae.num_eval=20",
        ),
    ]
    proc = run_tool("vae-eval", args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((run / "eval.json").read_text())["disentanglement"]
    assert len(entry["details"]["mig"]["per_factor"]) == 3  # x, y, size
    assert set(entry["scores"]) == {
        "disentanglement/mig",
        "disentanglement/factor_vae_score",
        "disentanglement/beta_vae_score",
    }
    (folder / "factors.csv").write_text("file,x\nmissing.png,1\nsq_0_0_3.png,2\n")
    proc = run_tool("vae-eval", args, cwd=tmp_path)
    assert proc.returncode == 2 and "do not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_dsprites_from_a_file_of_the_official_layout_and_xyobject_train_and_score(tmp_path):
    from vae_cli.factors.dsprites import FILENAME

    sizes = (1, 3, 2, 4, 4, 4)  # dSprites' layout on a smaller grid: colour, shape, scale, orientation, x, y
    classes = np.indices(sizes).reshape(len(sizes), -1).T
    images = np.zeros((len(classes), 64, 64), dtype=np.uint8)
    for i, (_, shape, scale, _, x, y) in enumerate(classes):  # a square whose place and size follow the factors
        side = 6 + 4 * scale + 2 * shape
        images[i, 8 + 10 * y : 8 + 10 * y + side, 8 + 10 * x : 8 + 10 * x + side] = 1
    (tmp_path / "data" / "dsprites").mkdir(parents=True)
    np.savez_compressed(tmp_path / "data" / "dsprites" / FILENAME, imgs=images, latents_classes=classes)
    small = [
        *as_sets(
            "metrics=[mig,beta_vae]",
            "mig.num_train=300",
            "beta_vae.batch_size=8",
            "beta_vae.num_train=40",
            "beta_vae.num_eval=20",
        ),
    ]
    for name, extra in (
        ("dsprites", [f"dataset.root={tmp_path / 'data'}", "dataset.num_test=64", "dataset.val_size=32"]),
        ("xyobject", ["dataset.num_train=400", "dataset.num_test=64", "dataset.val_size=64"]),
    ):
        run = tmp_path / name
        run_vae_train(
            [
                f"dataset={name}",
                *extra,
                *(a for a in SHAPES_TINY if not a.startswith("dataset")),
                "trainer.epochs=1",
                "trainer.batch_size=32",
                f"hydra.run.dir={run}",
            ],
            cwd=tmp_path,
        )
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["dataset"] == name and metrics["test/elbo"] < 0
        proc = run_tool("vae-eval", [str(run), "--disentanglement", *small], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        entry = json.loads((run / "eval.json").read_text())["disentanglement"]
        assert len(entry["details"]["mig"]["per_factor"]) == (5 if name == "dsprites" else 4)


@pytest.mark.parametrize("mode", [[], ["--disentanglement"]])
def test_a_device_torch_does_not_see_is_refused_by_name(scored_run, tmp_path, mode):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_tool("vae-eval", [str(scored_run), *mode, "--device", "cuda"], cwd=tmp_path)
    assert proc.returncode == 2 and "--device cuda is not available here" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_scored_while_training_resumes_to_the_same_weights_and_scores(tmp_path):
    import torch

    from tests.conftest import stopped_mid_run_then_resumed

    args = [
        *SHAPES_TINY,
        *METRICS_TINY,
        "disentanglement.metrics=[mig,factor_vae]",
        "disentanglement.every_epochs=1",
        "trainer.epochs=3",
        "dataset.num_train=2400",
    ]
    run_vae_train([*args, f"hydra.run.dir={tmp_path / 'straight'}"], cwd=tmp_path)
    stopped_mid_run_then_resumed(args, tmp_path / "run", tmp_path, after="epoch 1/3", timeout=180)
    a, b = (
        torch.load(d / "checkpoints" / "last.pt", weights_only=True)["model"]
        for d in (tmp_path / "straight", tmp_path / "run")
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "straight", tmp_path / "run"))
    for key in ("disentanglement/mig", "disentanglement/factor_vae_score"):
        assert ma[key] == mb[key]


@pytest.mark.parametrize(
    "args,message",
    [
        (["dataset=shapes2d", "disentanglement.metrics=[nope]"], "unknown ['nope']"),
        (["dataset=shapes2d", "disentanglement.mig.num_bins=1"], "disentanglement.mig.num_bins must be >= 2"),
        (["dataset=shapes2d", "disentanglement.bogus=1"], "Unknown config key 'disentanglement.bogus'"),
        (["dataset=shapes2d", "dataset.image_size=32"], "'shapes2d' images are 1x64x64"),
        (["dataset=shapes2d", "dataset.num_train=737000"], "at most the 737280 grid points"),
        (["dataset=shapes2d", "model=vqvae", "disentanglement.every_epochs=1"], "not a VQ-VAE"),
        (["dataset=fashion_mnist", "dataset.num_train=null"], "only for factor datasets"),
        (["dataset=fashion_mnist", "dataset.factors_csv=x.csv"], "read only by dataset=image_folder"),
    ],
)
def test_bad_factor_dataset_and_metric_keys_stop_vae_train_before_any_write(tmp_path, args, message):
    run = tmp_path / "run"
    proc = run_vae_train([*args, "trainer.epochs=1", f"hydra.run.dir={run}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not run.exists()


def test_a_broken_factors_csv_is_refused_before_the_first_step(tmp_path):
    """disentanglement.every_epochs > 0 reads the ground truth after the first epoch: its table is checked at the
    start instead, so an hour of training is not lost to a typo in the CSV."""
    folder = tmp_path / "squares"
    folder.mkdir()
    for i in range(8):
        image = np.zeros((8, 8), dtype=np.uint8)
        image[i % 4 : i % 4 + 3, 0:3] = 255
        Image.fromarray(image).save(folder / f"{i}.png")
    (folder / "factors.csv").write_text("file,y\n" + "".join(f"{i}.png,{i % 4}\n" for i in range(8)) + "0.png,9\n")
    run = tmp_path / "run"
    proc = run_tool(
        "vae-train",
        [
            "dataset=image_folder",
            "model=mlp",
            f"dataset.root={folder}",
            "dataset.image_size=8",
            "dataset.val_size=2",
            "dataset.factors_csv=factors.csv",
            "disentanglement.every_epochs=1",
            "trainer.epochs=1",
            "trainer.batch_size=2",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "'0.png' is listed twice (rows 2 and 10)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run / "checkpoints").exists()  # refused before anything was trained
