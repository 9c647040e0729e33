"""vae-cli: a config-driven trainer for variational autoencoders."""

__version__ = "0.1.0"
