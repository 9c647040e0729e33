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
    assert files[1].read_text().startswith("Ranked by val/nll_iw (lower is better).")
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
