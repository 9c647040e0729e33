"""Start the real `tensorboard` server on a loopback port and read a run's scalars back through its HTTP API, as
a user's browser would."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import TINY, run_vae_train, single_run_dir
from tests.e2e.events import load_events, scalar_values


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def _serving(logdir: Path, runs_expected: int = 1) -> Iterator[tuple[str, list[str]]]:
    """The real tensorboard server on ``logdir``: its base URL and runs, once it lists them."""
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        runs: list[str] = []
        while time.time() < deadline:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                runs = _get_json(f"{base}/data/runs")
                if len(runs) >= runs_expected:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        yield base, runs
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_serves_the_run_scalars(tmp_path):
    run_vae_train(TINY, cwd=tmp_path)
    run = single_run_dir(tmp_path)
    with _serving(tmp_path / "outputs") as (base, runs):
        run_name = str(run.relative_to(tmp_path / "outputs"))
        assert run_name in runs, runs
        tags = _get_json(f"{base}/data/plugin/scalars/tags")[run_name]
        assert {"train/loss", "val/elbo", "train/lr", "train/images_per_sec"} <= set(tags)
        query = urllib.parse.urlencode({"run": run_name, "tag": "val/elbo"})
        points = _get_json(f"{base}/data/plugin/scalars/scalars?{query}")  # [[wall_time, step, value], ...]
        assert [p[1] for p in points] == [8, 16]
        expected = scalar_values(load_events(run), "val/elbo")
        assert [round(p[2], 4) for p in points] == [round(v, 4) for v in expected]
        images = _get_json(f"{base}/data/plugin/images/tags")
        assert "images/samples" in images[run_name]
        # CUSTOM SCALARS: one chart per term with its train and val curves, the loss first.
        layout = _get_json(f"{base}/data/plugin/custom_scalars/layout")
        first = layout["category"][0]
        assert first["title"] == "1. train and val"
        assert first["chart"][0]["title"] == "loss"
        assert first["chart"][0]["multiline"]["tag"] == ["^train/loss$", "^val/loss$"]
        assert {c["title"] for c in first["chart"]} >= {"loss", "recon", "kl", "elbo"}


def test_hparams_keeps_every_swept_key_across_runs_and_sweeps(tmp_path):
    """Runs that vary different keys, in one log dir: TensorBoard's HPARAMS columns hold every one of them
    (each run declares its own values, none imposes its column list on the others)."""
    quick = [*TINY, "trainer.epochs=1"]
    run_vae_train([*quick, "loss.beta=4"], cwd=tmp_path)
    run_vae_train(["-m", *quick, "model.latent_dim=3,5"], cwd=tmp_path)
    with _serving(tmp_path / "outputs", runs_expected=3) as (base, runs):
        assert len(runs) == 3, runs
        request = urllib.request.Request(
            f"{base}/data/plugin/hparams/experiment",
            data=json.dumps({"experimentName": ""}).encode(),
            headers={"Content-Type": "application/json", "X-TensorBoard-Feature-Flags": "{}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            experiment = json.loads(response.read())
        columns = {h["name"] for h in experiment["hparamInfos"]}
        assert {"loss.beta", "model.latent_dim", "dataset.name", "loss.name"} <= columns, columns
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"val/loss", "test/loss"} <= metrics
