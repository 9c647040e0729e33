"""eval.json is owned, merged and never silently replaced; readers never fail on a damaged one."""

from __future__ import annotations

import json

import pytest

from vae_cli.process.errors import ConfigError
from vae_cli.process.locks import DirLock
from vae_cli.runs.results import owned, read_eval, read_metrics, record_entry, stale


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", "[" * 100_000, b"\xff\xfe"])
def test_a_damaged_eval_json_is_moved_aside_named_and_never_dropped(tmp_path, damage, capsys):
    path = tmp_path / "eval.json"
    path.write_bytes(damage if isinstance(damage, bytes) else damage.encode())
    assert read_eval(tmp_path) == {}  # readers do not fail
    warning = record_entry(tmp_path, "test", {"nll_iw": 1.0})
    (aside,) = tmp_path.glob("eval.json.unreadable-*")
    assert aside.read_bytes() == (damage if isinstance(damage, bytes) else damage.encode())
    assert aside.name in warning and aside.name in capsys.readouterr().err
    assert json.loads(path.read_text()) == {"test": {"nll_iw": 1.0}}


def test_a_new_entry_keeps_the_others_and_a_partial_scoring_merges(tmp_path):
    record_entry(tmp_path, "test", {"nll_iw": 1.0})
    full = {"scores": {"d/mig": 0.1, "d/sap": 0.2}, "provenance": {"mig": {"step": 5}, "sap": {"step": 5}}}
    record_entry(tmp_path, "disentanglement", full, merge_scores=True)
    record_entry(tmp_path, "disentanglement", {"scores": {"d/mig": 0.3}, "provenance": {"mig": {"step": 9}}}, True)
    entries = read_eval(tmp_path)
    assert entries["test"] == {"nll_iw": 1.0}
    assert entries["disentanglement"]["scores"] == {"d/mig": 0.3, "d/sap": 0.2}
    assert entries["disentanglement"]["provenance"] == {"mig": {"step": 9}, "sap": {"step": 5}}


def test_a_writer_holds_the_run_and_a_held_run_is_refused(tmp_path):
    holder = DirLock(tmp_path)
    assert holder.acquire()
    try:
        with pytest.raises(ConfigError, match=r"is in use by .* Nothing was written"), owned(tmp_path, "eval.json"):
            pass
    finally:
        holder.release()
    with owned(tmp_path, "eval.json"):
        assert not DirLock(tmp_path).acquire()  # others are refused meanwhile


def test_metrics_that_are_not_an_object_read_as_empty_and_staleness_needs_both_digests(tmp_path):
    (tmp_path / "metrics.json").write_text("[1, 2, 3]")
    assert read_metrics(tmp_path) == {}
    entry = {"checkpoint": "r/checkpoints/best.pt", "checkpoint_digest": "a"}
    assert stale(entry, {"checkpoints": {"best": {"digest": "b"}}})
    assert not stale(entry, {"checkpoints": {"best": {"digest": "a"}}})
    assert not stale(entry, {}) and not stale({"checkpoint": "x/best.pt"}, {"checkpoints": {"best": {"digest": "b"}}})
