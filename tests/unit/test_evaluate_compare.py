"""Sweep comparison: eval.json columns in the sweep summary, ranking direction, failed jobs, the plot."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from PIL import Image

from vae_cli.process.errors import VaeCliError
from vae_cli.runs.sweeps.compare import compare
from vae_cli.runs.sweeps.metrics import higher_is_better
from vae_cli.runs.sweeps.summary import write_summary

JOBS = [  # (latent_dim, beta, val/elbo, eval test nll_iw or None)
    (2, 1.0, -250.0, 245.0),
    (2, 4.0, -260.0, 255.5),
    (16, 1.0, -240.0, 236.25),
    (16, 4.0, -255.0, None),
]


def make_sweep(root, with_failed: bool = True):
    for job, (ld, beta, elbo, nll) in enumerate(JOBS):
        d = root / str(job)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.latent_dim={ld}", f"loss.beta={beta}"]))
        metrics = {"epochs": 10, "val/elbo": elbo, "test/elbo": elbo - 1, "val/nll_iw": -elbo - 2}
        (d / "metrics.json").write_text(json.dumps(metrics))
        if nll is not None:
            (d / "eval.json").write_text(json.dumps({"test": {"nll_iw": nll, "k": 100, "active_units": ld}}))
    if with_failed:
        failed = root / "4" / ".hydra"
        failed.mkdir(parents=True)
        (failed / "overrides.yaml").write_text(yaml.safe_dump(["model.latent_dim=32", "loss.beta=1.0"]))
    return root


def test_summary_gains_the_eval_columns(tmp_path):
    csv_path, _ = write_summary(make_sweep(tmp_path))
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["eval/test/nll_iw"] for r in rows] == ["245.0", "255.5", "236.25", "", ""]
    assert [r["val/nll_iw"] for r in rows] == ["248.0", "258.0", "238.0", "253.0", ""]
    assert rows[2]["eval/test/active_units"] == "16" and rows[0]["eval/test/k"] == "100"


def test_default_metric_is_the_best_one_every_finished_job_has(tmp_path):
    sweep = make_sweep(tmp_path)
    ranked, metric, files = compare(sweep)
    # Job 3 has no eval.json, so the IW test column is incomplete: rank by val/nll_iw (lower is better).
    assert metric == "val/nll_iw"
    assert [r["job"] for r in ranked] == [2, 0, 3, 1, 4]
    assert [r.get("rank") for r in ranked] == [1, 2, 3, 4, None]  # the failed job is listed last, unranked
    table = list(csv.DictReader(files[0].open()))
    assert [t["job"] for t in table] == ["2", "0", "3", "1", "4"] and table[-1]["status"] == "failed"
    assert files[1].read_text().startswith("Ranked by val/nll_iw (lower is better): a bound on log p(x)")
    plot = Image.open(files[2])
    assert plot.height == 380 and plot.width > 560  # one line per loss.beta value, legend at the right


def test_requested_metric_and_direction(tmp_path):
    sweep = make_sweep(tmp_path)
    ranked, metric, _ = compare(sweep, metric="val/elbo", x_key="loss.beta")
    assert metric == "val/elbo" and [r["job"] for r in ranked][:4] == [2, 0, 3, 1]  # higher ELBO first
    ranked, _, _ = compare(sweep, metric="eval/test/nll_iw")
    assert [r["job"] for r in ranked] == [2, 0, 1, 3, 4]  # job 3 has no eval: after the ranked ones
    with pytest.raises(VaeCliError, match="not a swept key"):
        compare(sweep, x_key="optim.lr")
    with pytest.raises(VaeCliError, match="No finished job has the metric 'test/bogus'"):
        compare(sweep, metric="test/bogus")


def test_direction_of_known_metrics():
    assert higher_is_better("val/elbo") and higher_is_better("eval/test/active_units")
    assert not higher_is_better("eval/test/nll_iw") and not higher_is_better("test/loss")
    assert not higher_is_better("eval/test/bits_per_dim")


def _job(root, job, metrics, loss=None, sweep_metric="val/loss", evaluation=None):
    d = root / str(job)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"trainer.seed={job}"]))
    config = {"trainer": {"sweep_metric": sweep_metric}, "loss": loss or {"name": "elbo", "beta": 1.0}}
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (d / "metrics.json").write_text(json.dumps({"epochs": 1, **metrics}))
    if evaluation is not None:
        (d / "eval.json").write_text(json.dumps({"test": evaluation}))
    return d


def _best(sweep):
    write_summary(sweep)
    return [int(r["job"]) for r in csv.DictReader((sweep / "summary.csv").open()) if r["best"] == "yes"]


def test_a_nan_is_never_best_in_the_summary_nor_ranked_by_compare(tmp_path):
    _job(tmp_path, 0, {"val/loss": float("nan"), "val/elbo": -240.0, "val/nll_iw": 230.0})
    _job(tmp_path, 1, {"val/loss": 250.0, "val/elbo": -250.0, "val/nll_iw": 240.0})
    # Not every job has a finite val/loss: the bound ranks them.
    assert _best(tmp_path) == [0]
    ranked, metric, _ = compare(tmp_path, metric="val/loss")
    assert metric == "val/loss" and [r.get("rank") for r in ranked] == [1, None] and ranked[1]["job"] == 0
    assert "Not ranked (no finite value): job(s) 0" in (tmp_path / "compare.md").read_text()


def test_a_sweep_over_objectives_is_ranked_by_a_bound_and_one_objective_by_its_sweep_metric(tmp_path):
    over = tmp_path / "objectives"
    _job(over, 0, {"val/loss": 100.0, "val/elbo": -260.0, "val/nll_iw": 250.0}, loss={"name": "elbo", "beta": 4.0})
    _job(over, 1, {"val/loss": 245.0, "val/elbo": -250.0, "val/nll_iw": 240.0}, loss={"name": "iwae", "k": 5})
    # The beta-VAE's val/loss is smallest, but it is not the same quantity: the bound decides, in both tools.
    assert _best(over) == [1]
    assert "best: the lowest val/nll_iw (a bound on log p(x)" in (over / "summary.md").read_text()
    assert compare(over)[1] == "val/nll_iw"
    one = tmp_path / "one"
    _job(one, 0, {"val/loss": 240.0, "val/elbo": -240.0, "val/nll_iw": 250.0})
    _job(one, 1, {"val/loss": 245.0, "val/elbo": -245.0, "val/nll_iw": 239.0})
    assert _best(one) == [0]  # one objective, one weight: what the sweeper minimized means the same for both
    assert compare(one)[1] == "val/loss"


def test_eval_entries_of_another_k_or_from_an_older_checkpoint_are_not_ranked_together(tmp_path):
    base = {"val/loss": 240.0, "val/elbo": -240.0, "val/nll_iw": 250.0}
    _job(tmp_path, 0, base, evaluation={"nll_iw": 230.0, "k": 100, "num_images": 10000})
    _job(tmp_path, 1, base, evaluation={"nll_iw": 220.0, "k": 5000, "num_images": 10000})
    with pytest.raises(VaeCliError, match=r"different K \(importance samples\) \(job 0: 100, job 1: 5000\)"):
        compare(tmp_path, metric="eval/test/nll_iw")
    assert compare(tmp_path)[1] == "val/loss"  # the default passes over the incomparable column
    stale_sweep = tmp_path / "stale"
    checkpoint = {"checkpoint": "RUN/checkpoints/best.pt", "checkpoint_digest": "old", "k": 100, "num_images": 10}
    _job(stale_sweep, 0, {**base, "checkpoints": {"best": {"digest": "new"}}}, evaluation={"nll_iw": 1.0, **checkpoint})
    _job(stale_sweep, 1, {**base, "checkpoints": {"best": {"digest": "old"}}}, evaluation={"nll_iw": 2.0, **checkpoint})
    with pytest.raises(VaeCliError, match=r"job\(s\) 0 were computed before the job trained further"):
        compare(stale_sweep, metric="eval/test/nll_iw")


def _autoencoder(root, job, loss, mse, samples=None):
    d = _job(root, job, {"val/loss": 100.0 + job, "val/recon": 100.0 + job}, loss={"name": loss})
    entries = {"test": {"recon": 100.0 + job, "mse": mse, "no_bound": "a point encoder"}}
    for key, (fid, precision, network, n) in (samples or {}).items():
        entries[f"samples_{key}"] = {
            "fid": fid,
            "kid": fid / 100,
            "precision": precision,
            "recall": 0.5,
            "num_samples": n,
            "num_real": 10000,
            "feature_network": network,
        }
    (d / "eval.json").write_text(json.dumps(entries))
    return d


def test_a_sweep_without_bounds_is_ranked_by_sample_quality_then_reconstruction(tmp_path):
    net = "vae-cli-classifier:fashion_mnist:abc"
    _autoencoder(tmp_path, 0, "ae", 0.011, {"gmm": (40.0, 0.8, net, 1000)})
    _autoencoder(tmp_path, 1, "wae", 0.010, {"gmm": (30.0, 0.9, net, 1000), "prior": (150.0, 0.5, net, 1000)})
    ranked, metric, files = compare(tmp_path)
    # Two objectives: their val/loss differ in meaning; no bound; every job has sample_gmm/fid of one network and N.
    assert metric == "sample_gmm/fid" and [r["job"] for r in ranked] == [1, 0]
    assert "models without a likelihood bound" in files[1].read_text()
    rows = list(csv.DictReader(write_summary(tmp_path)[0].open()))
    assert rows[1]["sample/fid"] == "150.0" and rows[0]["sample_gmm/precision"] == "0.8"
    assert rows[0]["eval/test/mse"] == "0.011"
    # Precision and recall are better higher; FID and KID lower.
    assert higher_is_better("sample_gmm/precision") and higher_is_better("sample/recall")
    assert not higher_is_better("sample/fid") and not higher_is_better("sample_gmm/kid")
    ranked, _, _ = compare(tmp_path, metric="sample_gmm/precision")
    assert [r["job"] for r in ranked] == [1, 0]


def test_sample_scores_of_other_feature_networks_or_n_are_not_ranked_together(tmp_path):
    _autoencoder(tmp_path, 0, "ae", 0.011, {"gmm": (40.0, 0.8, "vae-cli-classifier:fmnist:abc", 1000)})
    _autoencoder(tmp_path, 1, "rae", 0.010, {"gmm": (30.0, 0.9, "inception-v3-fid:123", 1000)})
    with pytest.raises(VaeCliError, match="different feature networks"):
        compare(tmp_path, metric="sample_gmm/fid")
    # The default passes over them (and over two objectives' losses), to the reconstruction error every job has.
    assert compare(tmp_path)[1] == "eval/test/mse"
    other = tmp_path / "n"
    _autoencoder(other, 0, "ae", 0.011, {"gmm": (40.0, 0.8, "net", 1000)})
    _autoencoder(other, 1, "ae", 0.010, {"gmm": (30.0, 0.9, "net", 5000)})
    with pytest.raises(VaeCliError, match="different numbers of samples N"):
        compare(other, metric="sample_gmm/fid")
