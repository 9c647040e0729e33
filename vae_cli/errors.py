"""The one exception family that reaches the user as a message, not a traceback.

Each message is a short paragraph that names the problem and the fix. ``vae_cli.cli`` prints it and exits
with status 2; anything else is a bug and keeps its traceback.
"""


class VaeCliError(Exception):
    """A problem the user can fix (bad config, missing data, unusable checkpoint)."""


class ConfigError(VaeCliError):
    pass


class DataError(VaeCliError):
    pass


class CheckpointError(VaeCliError):
    pass


class TrainingError(VaeCliError):
    pass
