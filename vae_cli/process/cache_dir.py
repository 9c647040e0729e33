"""Where vae-cli keeps what it computes once per machine (the sample-quality feature networks): ``$VAE_CLI_CACHE``,
else ``$XDG_CACHE_HOME/vae-cli``, else ``~/.cache/vae-cli``."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    explicit = os.environ.get("VAE_CLI_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "vae-cli"
