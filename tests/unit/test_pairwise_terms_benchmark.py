"""benchmarks/pairwise_terms.py runs (it checks each pair of versions agrees before timing them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_pairwise_terms_benchmark_runs_and_prints_its_ratios():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "pairwise_terms.py"),
            "--batch",
            "16",
            "--reps",
            "1",
            "--steps",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("B=16 D=20") and len(lines) == 4
    assert all(re.search(r": \w+ [0-9.]+ ms, [\w-]+ [0-9.]+ ms, [0-9.]+x$", line) for line in lines[1:]), out
