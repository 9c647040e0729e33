"""Import torch (and its TensorBoard writer) in a background thread, while vae-train composes its config, claims its
run directory and reads its data.

A plain training run spends most of its start-up importing: ~1.4 s for torch (and it spent ~1.0 s more on
``torch._dynamo``, which torch's optimizers import at their first use, until vae_cli/training/optim.py stepped
around it). Started as soon as the command line is known to be a training run, the imports overlap the rest of the
start-up; the main thread blocks on them only where it needs torch (Python's import locks make that safe).

OpenMP reads its wait policy and thread count when torch starts, so they are applied first, from the command
line (``trainer.cpu_wait``, ``trainer.cpu_threads``); when an ``experiment`` could set them instead, or for a sweep
(each job decides for itself), nothing is preloaded.
"""

from __future__ import annotations

import atexit
import importlib
import threading

from vae_cli.process.cpu_threads import apply_thread_count, apply_wait_policy, thread_count, wait_setting

# torch._dynamo is not among them: vae-train's optimizer no longer needs it (vae_cli/training/optim.py), and a
# compiled run imports it when it compiles.
MODULES = ("torch", "torch.utils.tensorboard")
_thread: threading.Thread | None = None


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the main thread imports it again and reports whatever is wrong
            return


def start(cpu_wait: str | None, cpu_threads: str | None) -> bool:
    """Apply the CPU settings and start the imports; False (nothing started) if the settings are not known yet."""
    global _thread
    if _thread is not None:
        return True
    try:
        wait = wait_setting(cpu_wait or "auto")
        threads = int(cpu_threads) if cpu_threads not in (None, "null", "None") else None
    except ValueError:
        return False  # a bad value: the preflight or the config check says so
    apply_wait_policy(wait)
    apply_thread_count(thread_count(threads))
    _thread = threading.Thread(target=_import_all, name="vae-cli-preload", daemon=True)
    _thread.start()
    # Interpreter shutdown must not meet an import half done (an early error exit, e.g. a bad config).
    atexit.register(_thread.join, 30)
    return True
