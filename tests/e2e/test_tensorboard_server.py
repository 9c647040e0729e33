"""Start the real `tensorboard` server on a loopback port and read a run's scalars back through its HTTP API, as
a user's browser would."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from tests.conftest import TINY, run_vae_train, single_run_dir
from tests.e2e.events import load_events, scalar_values


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_tensorboard_serves_the_run_scalars(tmp_path):
    run_vae_train(TINY, cwd=tmp_path)
    run = single_run_dir(tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(tmp_path / "outputs"),
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
        runs = []
        while time.time() < deadline:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                runs = _get_json(f"{base}/data/runs")
                if runs:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
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
    finally:
        server.terminate()
        server.wait(timeout=30)
