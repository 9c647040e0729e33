"""benchmarks/lever_ab.py runs: a step with one speed lever on and off in one process, both ways through the product."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(("lever", "model"), [("shared_discriminator", "aae"), ("mmd_backward", "info_vae")])
def test_lever_ab_times_the_step_both_ways_and_prints_the_ratio(lever, model):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "lever_ab.py"),
            f"--lever={lever}",
            f"--models={model}",
            "--blocks=2",
            "--steps=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(rf"{lever}: off ([0-9.]+) ms, on ([0-9.]+) ms, off/on ([0-9.]+)x", proc.stdout)
    assert found, proc.stdout
    off, on, ratio = (float(v) for v in found.groups())
    assert off > 0 and on > 0 and ratio == pytest.approx(off / on, rel=0.01)
