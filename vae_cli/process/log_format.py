"""How vae-cli's log lines look: short on the console, complete in the run's log file.

Console: ``[20:41:07] epoch 3/10  train loss ...``; a warning or an error says so after the time. The log file
(``<run dir>/vae-train.log``) keeps the date, the level and the module of every line, and the development detail
(DEBUG: thread and memory settings, the first step's time) the console leaves out
(``configs/hydra/job_logging/vae_cli.yaml``).
"""

from __future__ import annotations

import logging


class ConsoleFormatter(logging.Formatter):
    """``[HH:MM:SS] message``; ``[HH:MM:SS] warning: message`` from WARNING up."""

    def __init__(self) -> None:
        super().__init__(fmt="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            stamp_end = text.find("] ") + 2
            text = f"{text[:stamp_end]}{record.levelname.lower()}: {text[stamp_end:]}"
        return text


def console_logging(level: int = logging.INFO) -> None:
    """For the tools (vae-eval, vae-sample, vae-compare): vae-cli's log lines (progress, what starts) on stderr, in
    the console format; their results stay on stdout."""
    handler = logging.StreamHandler()
    handler.setFormatter(ConsoleFormatter())
    handler.setLevel(level)
    logger = logging.getLogger("vae_cli")
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
