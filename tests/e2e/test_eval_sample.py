"""End to end: vae-eval, vae-sample, vae-compare and the training-time latent views, on one tiny trained sweep.

One ``vae-train -m`` (latent_dim 2 and 4) per module; every number the commands write is checked against a
computation done here, from the checkpoint, independently of vae_cli.evaluation.bounds.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import TINY, run_vae_train
from tests.e2e.events import scalar_steps, scalar_values
from vae_cli.commands import compare, evaluate, sample
from vae_cli.config.schema import structured
from vae_cli.datasets import load_dataset, to_unit_float
from vae_cli.evaluation import plots
from vae_cli.models.build import build_model
from vae_cli.training.checkpoint import save_checkpoint

TILE = 58  # 28-pixel images scaled to 56 (plots.MIN_TILE) + 2 pixels of grid padding
LINE = plots.LABEL_FONT_SIZE + 6  # a title, or the column labels, above a grid


def _grid_fits(size: tuple[int, int], cols: int, rows: int, left: int, top: int) -> bool:
    """A labelled grid of ``cols`` x ``rows`` tiles starting at (left, top): its height exactly, its width at least
    (a title may be wider than the grid)."""
    return size[1] == top + rows * TILE + 2 and size[0] >= left + cols * TILE + 2


def run_cli(name: str, args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / name
    proc = subprocess.run(
        [str(exe if exe.is_file() else name), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("eval_sweep")
    run_vae_train(["-m", *TINY, "optim.lr=3e-3", "model.latent_dim=2,4"], cwd=cwd)
    (sweep_dir,) = list((cwd / "outputs" / "multirun").glob("*/*"))
    return sweep_dir


def restore(run: Path, name: str = "best.pt"):
    """Model, config and data of a run, rebuilt here from the checkpoint (weights_only)."""
    ckpt = torch.load(run / "checkpoints" / name, weights_only=True)
    cfg = structured(ckpt["config"])
    data = load_dataset(cfg.dataset, seed=cfg.trainer.seed)
    model = build_model(cfg, data.image_shape)
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg, data, ckpt


def load_events(run_dir: Path) -> EventAccumulator:
    # size_guidance 0 = keep everything; histograms too (the default keeps only the last one).
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0, "histograms": 0})
    acc.Reload()
    return acc


def bernoulli_log_lik(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    dist = torch.distributions.Bernoulli(logits=logits, validate_args=False)  # grey levels as soft targets
    return dist.log_prob(x).flatten(-3).sum(-1)


def test_vae_eval_numbers_match_an_independent_computation(sweep, tmp_path):
    run = sweep / "1"  # latent_dim 4
    proc = run_cli("vae-eval", [run, "--k", "50"], cwd=tmp_path)
    assert "active units" in proc.stdout and "IW-50" in proc.stdout
    res = json.loads((run / "eval.json").read_text())["test"]
    model, _, data, ckpt = restore(run)
    x = to_unit_float(data.test)
    assert res["num_images"] == x.shape[0] == 128 and res["k"] == 50 and res["num_pixels"] == 784
    assert res["checkpoint"].endswith("best.pt") and res["step"] == ckpt["step"]
    with torch.no_grad():
        mu, logvar = model.encode(x)
        # Closed-form terms, exactly: KL per dimension, the Burda active-unit statistic.
        kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)
        assert res["kl_per_dim"] == pytest.approx(kl_dims.mean(0).tolist(), rel=1e-4, abs=1e-6)
        assert res["kl"] == pytest.approx(kl_dims.sum(1).mean().item(), rel=1e-4)
        mu_var = mu.double().var(0, unbiased=False)
        assert res["mu_variance"] == pytest.approx(mu_var.tolist(), rel=1e-4, abs=1e-9)
        assert res["active_units"] == int((mu_var > 0.01).sum())
        # Monte Carlo terms with our own noise and torch.distributions: agree within sampling error.
        k = 200
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        z = mu + torch.exp(0.5 * logvar) * torch.randn(k, *mu.shape, generator=torch.Generator().manual_seed(123))
        log_lik = bernoulli_log_lik(x, model.decode(z.reshape(-1, 4)).view(k, *x.shape))
        log_w = log_lik + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    recon = -log_lik.mean().item()
    assert res["recon"] == pytest.approx(recon, abs=0.5)
    assert res["elbo"] == pytest.approx(-(res["recon"] + res["kl"]))
    iw50 = (torch.logsumexp(log_w[:50], 0) - math.log(50)).mean().item()
    assert -res["nll_iw"] == pytest.approx(iw50, abs=0.5)
    assert res["log_px_iw"] == -res["nll_iw"]
    assert res["bits_per_dim"] == pytest.approx(res["nll_iw"] / (784 * math.log(2)))
    # The bound ordering: IW-K above the ELBO; and vae-train's own test ELBO (one sample) agrees.
    assert -res["nll_iw"] > res["elbo"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert res["elbo"] == pytest.approx(metrics["test/elbo"], rel=5e-3)
    # TensorBoard: the same numbers, at the checkpoint's step, plus the per-dimension KL chart.
    acc = load_events(run)
    assert scalar_steps(acc, "eval/test/nll_iw") == [ckpt["step"]]
    assert scalar_values(acc, "eval/test/nll_iw")[0] == pytest.approx(res["nll_iw"], rel=1e-6)
    assert scalar_values(acc, "eval/test/active_units") == [res["active_units"]]
    assert "eval/test/kl_per_dim" in acc.Tags()["images"]

    # A second split is added to eval.json; the test entry stays.
    run_cli("vae-eval", [run, "--split", "val", "--k", "3"], cwd=tmp_path)
    both = json.loads((run / "eval.json").read_text())
    assert set(both) == {"test", "val"} and both["val"]["k"] == 3 and both["val"]["num_images"] == 128
    assert both["test"] == res
    assert not [p for p in run.iterdir() if p.name.startswith(".eval.json")]  # no temp file left


def test_training_logged_latent_views_and_the_projector(sweep):
    for job, latent_dim in (("0", 2), ("1", 4)):
        run = sweep / job
        acc = load_events(run)
        for tag in ("latent/mu", "latent/logvar"):
            assert [e.step for e in acc.Histograms(tag)] == [8, 16]
        assert {"latent/traversals", "latent/scatter"} <= set(acc.Tags()["images"])
        traversal = acc.Images("latent/traversals")[-1]
        left, top = plots.label_margins("t", [f"z[{d}]" for d in range(latent_dim)], ["c"])
        assert _grid_fits((traversal.width, traversal.height), 9, latent_dim, left, top)
        # 480 x 480 plot plus a legend naming the classes ("pattern 0" .. "pattern 9": 24 + 6 * 9 pixels).
        scatter = acc.Images("latent/scatter")[-1]
        assert (scatter.width, scatter.height) == (480 + 78, 480)
        assert Image.open(run / "images" / "latent_scatter_epoch002.png").size == (480 + 78, 480)
        # val/nll_iw after the last epoch (every 5 epochs by default), kept in metrics.json; IW above the ELBO.
        metrics = json.loads((run / "metrics.json").read_text())
        assert scalar_steps(acc, "val/nll_iw") == [16]
        assert scalar_values(acc, "val/nll_iw")[0] == pytest.approx(metrics["val/nll_iw"], rel=1e-6)
        assert metrics["val/nll_iw"] < -metrics["val/elbo"]
        # Projector: mu of the first val images of the final model, their labels, thumbnails.
        config = (run / "projector_config.pbtxt").read_text()
        assert 'tensor_path: "00016/latent_mu/tensors.tsv"' in config and "sprite" in config
        model, _, data, _ = restore(run, "last.pt")
        with torch.no_grad():
            mu, _ = model.encode(to_unit_float(data.val))
        folder = run / "00016" / "latent_mu"
        points = torch.tensor([[float(v) for v in line.split("\t")] for line in (folder / "tensors.tsv").open()])
        torch.testing.assert_close(points, mu, atol=1e-4, rtol=1e-4)
        labels = (folder / "metadata.tsv").read_text().splitlines()
        assert labels == [data.class_names[c] for c in data.val_labels.tolist()] and labels[0].startswith("pattern")
        assert Image.open(folder / "sprite.png").size == (12 * 28, 12 * 28)  # ceil(sqrt(128)) thumbnails a side


def test_vae_sample_writes_the_pictures_reproducibly(sweep, tmp_path):
    run2, run4 = sweep / "0", sweep / "1"
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    # Two processes with the same seed (byte-identical files), one more seed through the same main() in-process.
    for out in (a, b):
        run_cli("vae-sample", [run2, "--out", out, "--n", "16", "--seed", "1"], cwd=tmp_path)
    sample.main([str(run2), "--out", str(c), "--n", "16", "--seed", "2"])
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(
        [
            "samples.png",
            "reconstructions.png",
            "interpolations_linear.png",
            "interpolations_slerp.png",
            "traversals.png",
            "latent_scatter.png",
            "manifold.png",
        ]
    )
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name  # same seed: byte-identical
    assert (a / "samples.png").read_bytes() != (c / "samples.png").read_bytes()
    size = {name: Image.open(a / name).size for name in names}
    assert _grid_fits(size["samples.png"], 4, 4, 0, LINE)  # a title
    # 2 rows of 8 originals + 2 of reconstructions, each row named.
    assert _grid_fits(size["reconstructions.png"], 8, 4, *plots.label_margins("t", ["reconstruction"], None))
    assert _grid_fits(size["interpolations_linear.png"], 12, 8, 0, 2 * LINE)  # 8 pairs, 10 steps + 2 ends
    assert _grid_fits(size["traversals.png"], 11, 2, *plots.label_margins("t", ["z[0]", "z[1]"], ["c"]))
    assert _grid_fits(size["manifold.png"], 20, 20, 0, LINE)

    # The ends of each interpolation row are real test images; spherical and linear middles differ.
    data = restore(run2)[2]
    test_images = {img.numpy().tobytes() for img in data.test[:, 0]}
    # Tiles are the images scaled 2x (nearest neighbour): every second pixel gives the image back.
    lin = np.asarray(Image.open(a / "interpolations_linear.png"))[2 * LINE :, :, 0]
    for row in range(8):
        top = 2 + row * TILE
        left_end = np.ascontiguousarray(lin[top : top + 56 : 2, 2 : 2 + 56 : 2])
        right_end = np.ascontiguousarray(lin[top : top + 56 : 2, 2 + 11 * TILE : 2 + 11 * TILE + 56 : 2])
        assert left_end.tobytes() in test_images and right_end.tobytes() in test_images
    assert (a / "interpolations_linear.png").read_bytes() != (a / "interpolations_slerp.png").read_bytes()

    # Temperature 0: every sample is the decoder's mean at z = 0.
    d = tmp_path / "d"
    sample.main([str(run4), "--out", str(d), "--n", "4", "--temperature", "0"])
    grid = np.asarray(Image.open(d / "samples.png"))[LINE:, :, 0].astype("float32") / 255
    with torch.no_grad():
        expected = torch.sigmoid(restore(run4)[0].decode(torch.zeros(1, 4)))[0, 0].numpy()
    for r in range(2):
        for col in range(2):
            tile = grid[2 + r * TILE : 2 + r * TILE + 56 : 2, 2 + col * TILE : 2 + col * TILE + 56 : 2]
            assert abs(tile - expected).max() <= 1 / 255 + 1e-6
    assert not (d / "manifold.png").exists()  # 4-D latents: no manifold
    margins = plots.label_margins("t", [f"z[{i}]" for i in range(4)], ["c"])
    assert _grid_fits(Image.open(d / "traversals.png").size, 11, 4, *margins)


def test_vae_compare_ranks_the_sweep_and_adds_eval_columns(sweep, tmp_path):
    proc = run_cli("vae-compare", [sweep, "--eval", "--k", "10"], cwd=tmp_path)
    nll = {job: json.loads((sweep / job / "eval.json").read_text())["test"]["nll_iw"] for job in ("0", "1")}
    rows = list(csv.DictReader((sweep / "compare.csv").open()))
    assert [r["job"] for r in rows] == sorted(nll, key=nll.get)  # lower -log p(x) first
    assert [r["rank"] for r in rows] == ["1", "2"]
    assert [float(r["eval/test/nll_iw"]) for r in rows] == pytest.approx(sorted(nll.values()))
    assert "Ranked by eval/test/nll_iw (lower is better)" in proc.stdout
    assert Image.open(sweep / "compare.png").size[1] == 380
    summary = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [float(r["eval/test/nll_iw"]) for r in summary] == pytest.approx([nll["0"], nll["1"]])
    assert all(r["val/nll_iw"] for r in summary)

    by_elbo = run_cli("vae-compare", [sweep, "--metric", "val/elbo"], cwd=tmp_path)
    elbo = {job: json.loads((sweep / job / "metrics.json").read_text())["val/elbo"] for job in ("0", "1")}
    ranked = [r["job"] for r in csv.DictReader((sweep / "compare.csv").open())]
    assert ranked == sorted(elbo, key=elbo.get, reverse=True) and "higher is better" in by_elbo.stdout


def test_bad_paths_and_missing_data_are_one_clear_message(sweep, tmp_path, capsys):
    # One real subprocess (the console script's exit path), the rest through the same main() in-process.
    proc = run_cli("vae-eval", [tmp_path / "nope"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr

    def fails(main, args: list, *needles: str) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, err
        assert all(n in err for n in needles), err

    (tmp_path / "empty_run").mkdir()
    fails(evaluate.main, [tmp_path / "empty_run"], "vae-eval: error:", "is not a vae-train run directory")
    fails(sample.main, [tmp_path / "empty_run", "--out", tmp_path / "o"], "vae-sample: error:", "is not a vae-train")
    (tmp_path / "stopped_run").mkdir()
    (tmp_path / "stopped_run" / "run.json").write_text('{"state": "failed"}')
    fails(evaluate.main, [tmp_path / "stopped_run"], "vae-eval: error: No checkpoint in run directory")
    fails(evaluate.main, [sweep], "vae-eval: error:", "is a sweep folder", f"vae-compare {sweep}")
    fails(evaluate.main, [sweep / "0", "--k", "0"], "--k", "must be >= 1")
    fails(sample.main, [sweep / "0", "--out", "x", "--temperature", "-1"], "--temperature", ">= 0")
    fails(compare.main, [tmp_path / "empty_run"], "vae-compare: error:", "not a sweep folder")
    fails(compare.main, [sweep, "--metric", "nope"], "No finished job has the metric 'nope'")
    not_a_ckpt = tmp_path / "junk.pt"
    not_a_ckpt.write_bytes(b"not a checkpoint")
    fails(evaluate.main, [not_a_ckpt], "not a vae-cli checkpoint")

    # A run whose dataset is not on this machine: the data layer's message, naming --data-root's folder.
    ckpt = torch.load(sweep / "0" / "checkpoints" / "best.pt", weights_only=True)
    ckpt["config"]["dataset"].update(name="mnist", root=str(tmp_path / "elsewhere"))
    moved = tmp_path / "moved_run"
    (moved / "checkpoints").mkdir(parents=True)
    # Re-saved as vae-train saves (a fresh content digest): a run moved here from another machine, not a damaged file.
    save_checkpoint({k: v for k, v in ckpt.items() if k != "integrity"}, moved / "checkpoints" / "best.pt")
    fails(evaluate.main, [moved, "--data-root", tmp_path / "no_data"], "Dataset 'mnist' was not found", "no_data")
    fails(sample.main, [moved, "--out", tmp_path / "o"], "Dataset 'mnist' was not found")
    assert not (moved / "eval.json").exists() and not (tmp_path / "o").exists()
