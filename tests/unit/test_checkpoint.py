import os
import pickle

import pytest
import torch

from vae_cli.process.errors import CheckpointError
from vae_cli.training.checkpoint import FORMAT_VERSION, load_checkpoint, resolve_checkpoint_path, save_checkpoint


def _state():
    return {"model": {"w": torch.arange(4.0)}, "optimizer": {}, "epoch": 1, "step": 10, "config": {"a": 1}}


def test_save_then_load_with_weights_only(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(_state(), path)
    state = load_checkpoint(path)
    assert state["format_version"] == FORMAT_VERSION and state["package_version"]
    assert torch.equal(state["model"]["w"], torch.arange(4.0))
    assert torch.load(path, weights_only=True)["step"] == 10
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp files left behind


def test_overwrite_replaces_atomically(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(), path)
    inode_before = os.stat(path).st_ino
    save_checkpoint({**_state(), "step": 20}, path)
    assert load_checkpoint(path)["step"] == 20
    assert os.stat(path).st_ino != inode_before  # a new file renamed over the old one, not rewritten in place


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({**_state(), "model": Payload(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="Refused to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_plain_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "pwned2"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Payload(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n", b"PK\x03\x04", bytes(range(256))])
def test_a_file_that_is_no_checkpoint_at_all_is_a_clear_error(tmp_path, content):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"Could not read checkpoint|not a vae-cli checkpoint"):
        load_checkpoint(path)


def test_newer_format_is_refused_with_upgrade_hint(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({**_state(), "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="Upgrade vae-cli"):
        load_checkpoint(path)


def test_foreign_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a vae-cli checkpoint"):
        load_checkpoint(path)


def test_resolve_run_dir_and_missing_paths(tmp_path):
    save_checkpoint(_state(), tmp_path / "run" / "checkpoints" / "last.pt")
    assert resolve_checkpoint_path(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint_path(tmp_path / "missing")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="is not a vae-train run directory"):
        resolve_checkpoint_path(tmp_path / "empty_run")
    (tmp_path / "empty_run" / "run.json").write_text("{}")  # a run that stopped before its first checkpoint
    with pytest.raises(CheckpointError, match="No checkpoint"):
        resolve_checkpoint_path(tmp_path / "empty_run")
    save_checkpoint(_state(), tmp_path / "sweep" / "0" / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match=r"is a sweep folder \(vae-train -m\), not a run"):
        resolve_checkpoint_path(tmp_path / "sweep")
