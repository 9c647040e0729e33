"""A run interrupted mid-epoch and resumed ends with the same weights as an uninterrupted one, with the random
preprocessing on (dynamic binarization, dequantization, flips), in memory and streamed from disk."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from PIL import Image

from tests.conftest import TINY, compose_config
from vae_cli.objectives.elbo import ELBO
from vae_cli.training.checkpoint import load_checkpoint
from vae_cli.training.session import train
from vae_cli.training.trainer import TrainingInterrupted


def _image_folder(root):
    for i in range(160):
        pixels = torch.full((8, 8), (i * 37) % 256, dtype=torch.uint8)
        pixels[:, : i % 8] = 255  # a left band, so flips change the image
        Image.fromarray(pixels.numpy()).save(root / f"{i:03d}.png")
    return [
        "dataset=image_folder",
        f"dataset.root={root}",
        "dataset.channels=1",
        "dataset.image_size=8",
        "dataset.val_size=16",
        "dataset.memory_budget_mb=0",  # streamed from the cache file
        "dataset.num_workers=0",
        "model=mlp",
        "trainer.batch_size=16",
    ]


@pytest.mark.parametrize("where", ["in_memory", "streamed"])
def test_mid_epoch_resume_replays_the_same_random_pixels(tmp_path, monkeypatch, where):
    if where == "in_memory":
        args = [*TINY, "dataset.binarize=dynamic", "dataset.hflip=true"]
    else:
        (tmp_path / "imgs").mkdir()
        args = [*TINY, *_image_folder(tmp_path / "imgs"), "dataset.dequantize=true", "dataset.hflip=true"]
    args.append("trainer.epochs=1")  # 8 batches; the interrupt lands in the middle
    train(compose_config(args), tmp_path / "straight")

    original = ELBO.forward

    seen: list[torch.Tensor] = []

    def interrupt_at_step_5(self, model, x, y, step=None):
        if step is not None:
            seen.append(x.detach().clone())
        if step is not None and int(step) == 5:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the handler sets a flag, the trainer checkpoints
        return original(self, model, x, y, step)

    monkeypatch.setattr(ELBO, "forward", interrupt_at_step_5)
    with pytest.raises(TrainingInterrupted):
        train(compose_config(args), tmp_path / "run")
    monkeypatch.setattr(ELBO, "forward", original)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["batch_in_epoch"] == 6  # mid-epoch
    # The preprocessing really reached the model: binary pixels, or grey levels off the 1/255 grid.
    pixels = torch.cat(seen)
    if where == "in_memory":
        assert set(pixels.unique().tolist()) == {0.0, 1.0}
    else:
        off_grid = ((pixels * 255) - (pixels * 255).round()).abs() > 1e-3
        assert off_grid.float().mean() > 0.5

    resume = f"trainer.resume={tmp_path / 'run'}"
    train(compose_config([resume]), tmp_path / "run", overrides=[resume])
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
