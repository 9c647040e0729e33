"""A phase's progress off a terminal: a line at most every ``every_s`` seconds, rates that leave out what a resumed
phase had done before, and one forecast from the timed first units (the clock is a fake one here)."""

from __future__ import annotations

import logging

import pytest

from vae_cli.process import progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress.time, "monotonic", fake)
    return fake


def test_lines_come_every_interval_with_rates_that_leave_out_a_resumed_start(clock, caplog):
    caplog.set_level(logging.INFO, logger="vae_cli")
    with progress.phase("epoch 2/3", total=100, mode="none", every_s=10, initial=40, status=lambda: "loss 1.5") as p:
        for _ in range(30):
            clock.now += 1.0  # one batch a second
            p.advance()
    lines = [r.getMessage() for r in caplog.records]
    # At 10, 20 and 30 seconds: 10 batches in 10 s is 1 batch/s (not 5: the 40 done before are not this run's).
    assert lines == [
        "epoch 2/3: 50/100 batches (50%), loss 1.5, 1 batches/s, about 50 s left",
        "epoch 2/3: 60/100 batches (60%), loss 1.5, 1 batches/s, about 40 s left",
        "epoch 2/3: 70/100 batches (70%), loss 1.5, 1 batches/s, about 30 s left",
    ]


def test_the_forecast_is_said_once_from_the_units_after_the_first(clock, caplog):
    caplog.set_level(logging.INFO, logger="vae_cli")
    said = []

    def forecast(seconds: float) -> str:
        said.append(seconds)
        return f"about {progress.duration(seconds)} in all"

    with progress.phase("vae-eval", total=20, mode="none", every_s=1e9, forecast=forecast) as p:
        clock.now += 30.0  # the first batch pays the warm-up
        p.advance()
        for _ in range(5):
            clock.now += 2.0
            p.advance()
    # Measured from the second batch on (2 s each), said at the second: 32 s so far + 18 more batches x 2 s = 68 s,
    # once.
    assert said == [pytest.approx(68.0)]
    assert [r.getMessage() for r in caplog.records] == ["about 1 min 08 s in all"]


def test_durations_read_at_a_glance():
    assert [progress.duration(s) for s in (4.25, 42, 185, 7800)] == ["4.2 s", "42 s", "3 min 05 s", "2 h 10 min"]
