"""The trainer through the Python API (`run.train` with a composed config), with faults injected in-process."""

from __future__ import annotations

import torch

from tests.conftest import TINY, compose_config
from vae_cli.objectives.elbo import ELBO
from vae_cli.training.checkpoint import load_checkpoint
from vae_cli.training.session import train


def _nan_at(monkeypatch, bad_steps: set[int]) -> list[int]:
    """Make the training loss NaN at the given optimizer steps (evaluation, step=None, is untouched)."""
    seen: list[int] = []
    original = ELBO.forward

    def patched(self, model, x, y, step=None):
        terms = original(self, model, x, y, step)
        s = None if step is None else int(step)
        if s in bad_steps and s not in seen:
            seen.append(s)
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(ELBO, "forward", patched)
    return seen


def test_skip_policy_drops_only_the_bad_batch(tmp_path, monkeypatch):
    seen = _nan_at(monkeypatch, {3})
    cfg = compose_config([*TINY, "trainer.nan_policy=skip"])
    metrics = train(cfg, tmp_path / "run")
    assert seen == [3]
    # 2 epochs x 8 batches, one update dropped: 15 optimizer steps, and the run finished with finite numbers.
    assert metrics["steps"] == 15 and metrics["epochs"] == 2
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("val/elbo", "test/elbo"))
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["train_state"]["skipped_batches"] == 1


def test_stop_policy_keeps_no_state_from_the_bad_step(tmp_path, monkeypatch):
    import pytest

    from vae_cli.process.errors import TrainingError

    _nan_at(monkeypatch, {10})
    cfg = compose_config([*TINY, "trainer.nan_policy=stop"])
    with pytest.raises(TrainingError, match="at step 10 \\(epoch 2, batch 3\\)"):
        train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 8 and ckpt["epoch"] == 1  # the end-of-epoch-1 checkpoint, untouched


def test_interrupt_saves_the_mid_epoch_position_and_running_sums(tmp_path, monkeypatch):
    import os
    import signal

    import pytest

    from vae_cli.training.trainer import TrainingInterrupted

    original = ELBO.forward

    def interrupt_at_step_5(self, model, x, y, step=None):
        if step is not None and int(step) == 5:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does; the handler only sets a flag
        return original(self, model, x, y, step)

    monkeypatch.setattr(ELBO, "forward", interrupt_at_step_5)
    # Python's handler, or SIG_IGN where the test process was started in the background by a shell.
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(TrainingInterrupted) as info:
            train(compose_config(TINY), tmp_path / "run")
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert info.value.exit_code == 130 and "Resume with: vae-train trainer.resume=" in str(info.value)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]) == (0, 6, 6)
    state = ckpt["train_state"]
    assert state["epoch_count"] == 6 * 64
    loss_sum, recon_sum, kl_sum, elbo_sum = state["epoch_sums"]
    assert loss_sum > 0 and abs(elbo_sum + recon_sum + kl_sum) < 1e-3 * loss_sum
    # The handler was removed again: a later Ctrl-C would behave normally.
    assert after is signal.default_int_handler
