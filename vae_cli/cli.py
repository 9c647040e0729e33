"""``python -m vae_cli.cli`` (e.g. under ``torchrun -m vae_cli.cli ...``): the same as the ``vae-train`` command,
whose code is ``vae_cli.commands.train``."""

from vae_cli.commands.train import main

if __name__ == "__main__":
    main()
