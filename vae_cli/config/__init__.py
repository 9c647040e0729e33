"""Typed configs: the schemas of every config group, the cross-field checks, and the command-line preflight."""

from vae_cli.config.schema import *  # noqa: F403
from vae_cli.config.schema import known_train_size, register_configs, to_plain_dict, validate  # noqa: F401
