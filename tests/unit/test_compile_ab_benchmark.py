"""benchmarks/compile_ab.py runs: a model's step eager and compiled (fp32, bf16; and bf16 with inductor's Python
wrapper) in one process, and a model that vae-train refuses to compile is reported as refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_compile_ab_times_the_eager_and_compiled_steps_and_reports_a_refusal():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "compile_ab.py"),
            "--models",
            "vae",
            "rae_gp",
            "--blocks=1",
            "--steps=2",
            "--python-wrapper-too",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("| ")}
    cells = [c.strip() for c in rows["VAE"].split("|")[2:-1]]
    eager, fp32, fp32_x, bf16, bf16_x = float(cells[0]), float(cells[1]), cells[2], float(cells[3]), cells[4]
    python, cpp_x = float(cells[7]), cells[8]
    assert eager > 0 and fp32 > 0 and bf16 > 0 and python > 0
    # The speed-ups are the ratios of the printed times (rounded to 2 decimals each).
    assert float(fp32_x.rstrip("×")) == pytest.approx(eager / fp32, rel=0.02, abs=0.01)
    assert float(bf16_x.rstrip("×")) == pytest.approx(eager / bf16, rel=0.02, abs=0.01)
    assert float(cpp_x.rstrip("×")) == pytest.approx(python / bf16, rel=0.02, abs=0.01)
    assert "refused under compile" in rows["RAE-GP (β=1, λ=1e-4)"] and "double backward" in rows["RAE-GP (β=1, λ=1e-4)"]
