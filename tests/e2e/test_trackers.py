"""Experiment trackers beside TensorBoard, through the real commands: MLflow against a real local ``mlflow server``
(started here on 127.0.0.1 from .venv-mlflow, which scripts/setup.sh makes), read back through MlflowClient; W&B
in offline mode, read back from its run files; a tracker that cannot be reached, or that dies mid-run."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TINY, run_vae_train, vae_train_executable
from tests.e2e.events import load_events, scalar_steps, scalar_values

SERVER_EXE = REPO / ".venv-mlflow" / "bin" / "mlflow"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    if not SERVER_EXE.is_file():
        if os.environ.get("VAE_CLI_REQUIRE_TRACKERS") == "1":
            pytest.fail(f"the MLflow server environment is required here but missing: {SERVER_EXE}")
        pytest.skip(f"no MLflow server environment at {SERVER_EXE} (scripts/setup.sh makes it)")
    port = _free_port()
    folder.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [
            str(SERVER_EXE),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "server.log").open("w"),
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        assert server.poll() is None, (folder / "server.log").read_text()
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                if response.status == 200:
                    return server, uri
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the MLflow server did not come up:\n{(folder / 'server.log').read_text()}")


def _stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, 9)
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    server, uri = _start_server(tmp_path_factory.mktemp("mlflow"))
    yield uri
    _stop_server(server)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _runs_of(uri: str, run_dir: Path) -> list:
    client = _client(uri)
    experiment = client.get_experiment_by_name("vae-cli")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("vae_cli.run_dir") == str(run_dir.resolve())]


def _wandb_records(run_dir: Path) -> list:
    """The records of the W&B offline run file, decoded here: the LevelDB log layout W&B writes (a 7-byte file
    header, 32 KiB blocks, records split into FULL/FIRST/MIDDLE/LAST chunks behind a 7-byte chunk header), each a
    serialized ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, chunks, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            chunks = chunk
        elif kind == 3:
            chunks += chunk
        elif kind == 4:
            records.append(chunks + chunk)
    out = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        out.append(record)
    return out


def test_mlflow_and_wandb_get_the_run_params_metrics_images_and_files(mlflow_server, tmp_path):
    run = tmp_path / "run"
    run_vae_train(
        [*TINY, "logger=[mlflow,wandb]", f"logger.mlflow.tracking_uri={mlflow_server}", f"hydra.run.dir={run}"],
        cwd=tmp_path,
    )
    events = load_events(run)
    # MLflow: one run for this run directory, finished, with the whole config as params.
    (found,) = _runs_of(mlflow_server, run)
    client = _client(mlflow_server)
    assert found.info.status == "FINISHED"
    assert found.data.params["model.latent_dim"] == "4" and found.data.params["dataset.name"] == "synthetic"
    # Per-step metrics: the same steps and values as TensorBoard's.
    for tag in ("train/loss", "val/elbo"):
        history = client.get_metric_history(found.info.run_id, tag)
        assert [m.step for m in history] == scalar_steps(events, tag), tag
        assert [m.value for m in history] == pytest.approx(scalar_values(events, tag), rel=1e-6), tag
    metrics = json.loads((run / "metrics.json").read_text())
    assert found.data.metrics["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)
    # Pictures and files: the checkpoint downloaded back loads (weights only) and is the run's own, byte for byte.
    images = [a.path for a in client.list_artifacts(found.info.run_id, "images")]
    assert any("images_samples" in p and p.endswith(".png") for p in images), images
    local = client.download_artifacts(found.info.run_id, "checkpoints/best.pt", str(tmp_path / "down"))
    assert Path(local).read_bytes() == (run / "checkpoints" / "best.pt").read_bytes()
    assert "model" in torch.load(local, weights_only=True)
    back = client.download_artifacts(found.info.run_id, "metrics.json", str(tmp_path / "down"))
    assert json.loads(Path(back).read_text()) == metrics

    # W&B, offline: the config, the same per-step scalars, the pictures and the result files.
    records = _wandb_records(run)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert "run" in kinds and "exit" in kinds
    (started,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert config["model"]["latent_dim"] == 4 and config["dataset"]["name"] == "synthetic"
    rows = [
        {i.key or "/".join(i.nested_key): i.value_json for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    logged = [(int(row["_step"]), float(row["train/loss"])) for row in rows if "train/loss" in row]
    assert [s for s, _ in logged] == scalar_steps(events, "train/loss")
    assert [v for _, v in logged] == pytest.approx(scalar_values(events, "train/loss"), rel=1e-6)
    (files,) = run.glob("wandb/offline-run-*/files")
    assert json.loads((files / "metrics.json").read_text()) == metrics
    assert list(files.glob("media/images/images/samples_*.png"))


def test_a_resumed_run_continues_its_mlflow_run(mlflow_server, tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "logger=mlflow", f"logger.mlflow.tracking_uri={mlflow_server}", "trainer.epochs=1"]
    run_vae_train([*args, f"hydra.run.dir={run}"], cwd=tmp_path)
    first = json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"]
    run_vae_train([f"trainer.resume={run}", "trainer.epochs=2"], cwd=tmp_path)
    assert json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"] == first
    (found,) = _runs_of(mlflow_server, run)
    assert found.info.run_id == first and found.info.status == "FINISHED"
    steps = [m.step for m in _client(mlflow_server).get_metric_history(first, "val/loss")]
    assert steps == scalar_steps(load_events(run), "val/loss") == [8, 16]


def test_a_sweeps_jobs_are_mlflow_runs_tagged_with_their_sweep(mlflow_server, tmp_path):
    sweep = tmp_path / "sweep"
    run_vae_train(
        [
            "-m",
            *TINY,
            "trainer.epochs=1",
            "loss.beta=1,4",
            "logger=mlflow",
            f"logger.mlflow.tracking_uri={mlflow_server}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    jobs = [_runs_of(mlflow_server, sweep / job) for job in ("0", "1")]
    assert [len(j) for j in jobs] == [1, 1]
    tags = [j[0].data.tags for j in jobs]
    assert tags[0]["vae_cli.sweep"] == tags[1]["vae_cli.sweep"] and tags[0]["vae_cli.sweep"].endswith("sweep")
    assert [t["vae_cli.job"] for t in tags] == ["0", "1"]
    assert [j[0].data.params["loss.beta"] for j in jobs] == ["1.0", "4.0"]


def test_an_unreachable_tracker_refuses_the_run_before_training(tmp_path):
    run = tmp_path / "run"
    down = f"http://127.0.0.1:{_free_port()}"
    proc = run_vae_train(
        [*TINY, "logger=mlflow", f"logger.mlflow.tracking_uri={down}", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        check=False,
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
    )
    assert proc.returncode == 2, proc.stderr
    assert f"MLflow at {down} cannot be used" in proc.stderr and "nothing was trained" in proc.stderr
    assert "Traceback" not in proc.stderr and not run.exists()


def test_a_tracker_that_dies_mid_run_is_dropped_and_the_run_finishes(tmp_path):
    server, uri = _start_server(tmp_path / "mlflow")
    run = tmp_path / "run"
    args = [*TINY, "trainer.epochs=4", "dataset.num_train=1152", "logger=mlflow", f"logger.mlflow.tracking_uri={uri}"]
    proc = subprocess.Popen(
        [vae_train_executable(), *args, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
    )
    try:
        deadline = time.time() + 120
        log = run / "vae-train.log"
        while not (log.is_file() and "epoch 1/4  train" in log.read_text()):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.05)
    finally:
        _stop_server(server)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "MLflow stopped working" in out and "the run goes on with TensorBoard" in out
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 4
    assert scalar_steps(load_events(run), "val/loss")[-1] == 4 * 16
