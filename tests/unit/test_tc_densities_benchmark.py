"""benchmarks/tc_densities.py runs (it checks the two versions agree before timing them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_tc_densities_benchmark_runs_and_prints_its_ratio():
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "tc_densities.py"), "--batch", "16", "--reps", "1", "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "B=16 D=20" in out and "autograd" in out and out.strip().endswith("x")
