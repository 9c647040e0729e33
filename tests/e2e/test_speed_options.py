"""End to end: the speed options of `vae-train` (trainer.precision, trainer.compile, trainer.cuda_graphs) and the
speed benchmark's smoke mode, through the real command line."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import DEBIAN_FASHION, REPO, TINY, need_path, run_vae_train


def _train(tmp_path, name: str, extra: list[str]) -> dict:
    run = tmp_path / name
    run_vae_train([*TINY, "trainer.epochs=3", f"hydra.run.dir={run}", *extra], cwd=tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["_weights"] = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    return metrics


def _sane(metrics: dict) -> None:
    loss, recon, kl = metrics["test/loss"], metrics["test/recon"], metrics["test/kl"]
    assert math.isfinite(loss) and recon > 0 and kl >= 0
    assert abs(loss - (recon + kl)) < 1e-3 * loss


def test_bf16_and_compile_train_end_to_end_to_the_fp32_loss(tmp_path):
    fp32 = _train(tmp_path, "fp32", ["trainer.precision=fp32"])
    bf16 = _train(tmp_path, "bf16", ["trainer.precision=bf16"])
    compiled = _train(tmp_path, "compiled", ["trainer.precision=fp32", "trainer.compile=true"])
    for metrics in (fp32, bf16, compiled):
        _sane(metrics)
    assert (fp32["precision"], bf16["precision"], compiled["precision"]) == ("fp32", "bf16", "fp32")
    # Same seed, same data: bf16 matmuls and compiled kernels move the result by rounding noise only (the
    # benchmark shows the same on real Fashion-MNIST over 10 epochs).
    for other in (bf16, compiled):
        assert abs(other["test/loss"] - fp32["test/loss"]) < 0.01 * fp32["test/loss"]
    # Master weights stay fp32 under bf16; weights are saved from the uncompiled module (no "_orig_mod." keys).
    assert all(w.dtype == torch.float32 for w in bf16["_weights"].values())
    assert compiled["_weights"].keys() == fp32["_weights"].keys()


def test_auto_precision_trains_in_bf16_exactly_where_the_cpu_multiplies_in_bf16(tmp_path):
    # The default (trainer.precision=auto) is bf16 on a CPU with AMX / AVX512-BF16 and fp32 elsewhere; the run says
    # which in its log and in metrics.json, and trains bit for bit as the explicit choice does.
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    expected = "bf16" if native else "fp32"
    auto = _train(tmp_path, "auto", ["trainer.device=cpu"])
    explicit = _train(tmp_path, "explicit", ["trainer.device=cpu", f"trainer.precision={expected}"])
    assert auto["precision"] == explicit["precision"] == expected
    assert auto["test/loss"] == explicit["test/loss"]
    assert all(torch.equal(auto["_weights"][k], explicit["_weights"][k]) for k in auto["_weights"])
    log = (tmp_path / "auto" / "vae-train.log").read_text()
    assert f"training precision {expected} (auto: " in log


def test_cuda_graphs_without_a_gpu_is_refused_before_any_work(tmp_path):
    proc = run_vae_train([*TINY, "trainer.device=cpu", "trainer.cuda_graphs=true"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "trainer.cuda_graphs=true needs a CUDA device" in proc.stderr and "Traceback" not in proc.stderr


def test_compile_on_a_cpu_without_a_cpp_compiler_is_refused_with_the_fix(tmp_path):
    # torch.compile builds a CPU step's kernels with $CXX at run time; without a working one the run stops before
    # it loads any data, with the fix, instead of a traceback from inside torch at the first step.
    run = tmp_path / "run"
    proc = run_vae_train(
        [*TINY, "trainer.device=cpu", "trainer.compile=true", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        check=False,
        env={"CXX": "/bin/false"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "needs a C++ compiler" in proc.stderr and "trainer.compile=false" in proc.stderr
    assert "Traceback" not in proc.stderr and "InvalidCxxCompiler" not in proc.stderr
    assert not (run / "checkpoints").exists()


BROKEN_COMPILER = """#!/bin/sh
# Answers a version query as g++ does (so inductor accepts it as its compiler) and fails every build.
case "$1" in --version|-v|-dumpversion) exec g++ "$@";; esac
echo "broken-g++: refusing to build (a test)" >&2
exit 1
"""


def test_a_step_torch_compile_cannot_build_stops_the_run_with_the_fix(tmp_path):
    # A compiler that passes inductor's check but cannot build its kernels: the first step's compile fails inside
    # torch; the run stops there with exit 2 and the fix, nothing trained, and run.json says why.
    need_path(Path(shutil.which("g++") or "/nonexistent/g++"), "g++ (inductor's C++ compiler)")
    compiler = tmp_path / "broken-g++"
    compiler.write_text(BROKEN_COMPILER)
    compiler.chmod(0o755)
    run = tmp_path / "run"
    proc = run_vae_train(
        [*TINY, "trainer.device=cpu", "trainer.compile=true", "trainer.precision=bf16", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        check=False,
        # A cache of its own: kernels built by earlier runs on this machine would not need the compiler.
        env={"CXX": str(compiler), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache")},
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "torch.compile could not build this model's training step" in proc.stderr
    assert "trainer.compile=false" in proc.stderr and "trainer.precision=fp32" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run / "checkpoints" / "last.pt").exists()
    assert "torch.compile could not build" in json.loads((run / "run.json").read_text())["reason"]


def _speed_smoke(tmp_path, suite: str, *extra: str) -> subprocess.CompletedProcess:
    """``benchmarks/speed.py --smoke --suite <suite>`` on the real Fashion-MNIST, staged under tmp_path; exit 0."""
    need_path(DEBIAN_FASHION / "train-images-idx3-ubyte.gz", "Debian's dataset-fashion-mnist")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "speed.py"), "--smoke", "--suite", suite, *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_speed_benchmark_smoke_mode_prints_the_side_by_side_table(tmp_path):
    out = tmp_path / "bench.json"
    proc = _speed_smoke(tmp_path, "mlp", f"--data-root={tmp_path / 'data'}", f"--out={out}")
    rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("| (")}
    assert set(rows) == {"(a) classic", "(b) bare", "(c) vae-train"}
    assert "vae-train bf16" in proc.stdout and "× vs (a) classic" in proc.stdout
    for line in rows.values():
        cells = [c.strip() for c in line.split("|")[2:-1]]
        seconds, test_loss, rss = float(cells[0]), float(cells[2].split()[0]), float(cells[3])
        assert seconds > 0 and 200 < test_loss < 600 and rss > 100
    assert json.loads(out.read_text())["tables"]


def test_wait_policy_benchmark_smoke_mode_runs_every_policy_alone_and_paired(tmp_path):
    proc = _speed_smoke(tmp_path, "waits", "--data-root", str(tmp_path / "data"))
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| wait")]
    policies = [line.split("|")[1].strip() for line in rows]
    assert [p.split(" ")[0] for p in policies] == ["OpenMP", "GOMP_SPINCOUNT=1000", "OMP_WAIT_POLICY=PASSIVE"]
    for line in rows:
        alone, paired = (float(c) for c in line.split("|")[2:4])
        assert alone > 0 and paired > 0


def test_whole_run_benchmark_smoke_mode_times_the_default_run_beside_the_classic_example(tmp_path):
    proc = _speed_smoke(tmp_path, "whole", f"--data-root={tmp_path}")
    rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("| ")}
    names = {"classic example, 1 epochs", "vae-train trainer.epochs=1 (defaults)"}
    assert names | {"vae-train trainer.epochs=1 trainer.precision=fp32"} <= set(rows)
    for name in names:
        wall, loss, ratio = (c.strip() for c in rows[name].split("|")[2:5])
        assert float(wall) > 0 and 150 < float(loss.split()[0]) < 700 and ratio.endswith("×")


def test_an_unknown_precision_is_refused_naming_the_choices(tmp_path):
    proc = run_vae_train(
        [*TINY, "trainer.precision=fp16", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "trainer.precision must be one of auto, fp32, bf16" in proc.stderr
    assert not (tmp_path / "run").exists()
