"""vae-cli: a config-driven trainer for variational autoencoders.

From Python (a notebook)::

    from vae_cli import load_run

    run = load_run("outputs/2026-11-24/08-14-43")   # a run directory (best.pt) or a checkpoint file
    run.model              # the trained VAE (any variant), in eval mode
    run.config.loss.name   # its config, as it trained
    test = run.split("test")           # images (uint8) and labels, as the run saw them
    x = test.images[:8].float() / 255
    out = run.model(x, test.labels[:8])   # VAEOutput: params, mu, logvar, z
    pictures = run.model.likelihood.mean(run.model.sample(16))
"""

from vae_cli.process.version import __version__


def load_run(path, which: str = "best", device: str = "cpu"):
    """A trained run back in memory: ``.model``, ``.objective``, ``.config``, ``.split(name)``, ``.splits()``.

    ``path`` is a run directory (``checkpoints/<which>.pt``, falling back to the other checkpoint) or a checkpoint
    file. Torch and the rest load here, not at ``import vae_cli``.
    """
    from vae_cli.runs.loaded import load_run as load

    return load(path, which=which, device=device)


__all__ = ["__version__", "load_run"]
