"""vae-train's command line, read and rewritten before Hydra sees it.

Hydra's own flags are told apart from the overrides (``split_argv``), an override's value is read with Hydra's own
parser (``override_value``), and the command line is completed where vae-train decides something for the user:

- a resume continues in its own run directory (``resume_argv``), composed with its own group options where the
  command line sets their keys (``resume_choices_argv``);
- ``hydra/launcher=joblib`` gets vae-cli's stoppable subclass of the plugin's launcher (``launcher_argv``);
- ``hydra/sweeper=optuna`` gets vae-cli's resumable sweeper and a study in the sweep directory (``sweeper_argv``);
- a sweep whose swept dataset or experiment picks the model gets that choice for its sweep-level config
  (``family_argv``);
- under torchrun, ranks > 0 get a scratch run directory (``torchrun_argv``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from vae_cli.config.tree import config_dir

# Hydra's own flags, and which of them take a value (the next argument): the rest of argv are overrides.
HYDRA_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--shell-completion",
    "-sc",
}
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--version", "--info", "-i")


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(Hydra's flags with their values, the overrides)`` of a vae-train command line."""
    flags, overrides = [], []
    it = iter(argv)
    for arg in it:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in HYDRA_FLAGS_WITH_VALUE:
                value = next(it, None)
                if value is not None:
                    flags.append(value)
        else:
            overrides.append(arg)
    return flags, overrides


def hydra_quote(value: str) -> str:
    """A value as one quoted Hydra string, whatever it holds (spaces, commas, quotes, non-ASCII)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def override_value(overrides: list[str], key: str) -> str | None:
    """The parsed value of ``key=...`` (Hydra's parser: quotes and escapes handled), or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    found = None
    for text in overrides:
        if not text.lstrip("+~").startswith(f"{key}="):
            continue
        try:
            (override,) = parser.parse_overrides([text])
        except Exception:
            continue  # the preflight reports it
        if override.key_or_group == key and not override.is_sweep_override():
            value = override.value()
            found = None if value is None else str(value)
    return found


def resume_run_dir(overrides: list[str]) -> Path | None:
    """The run directory a ``trainer.resume=`` points at (a run directory, or a checkpoint inside one)."""
    resume = override_value(overrides, "trainer.resume")
    if not resume or resume in ("null", "None"):
        return None
    path = Path(resume).expanduser()
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent
    if path.is_dir():
        return path
    return None  # run.train reports a missing or foreign path with a clear message


def resume_argv(argv: list[str]) -> list[str]:
    """A resumed run continues in its own run directory (so TensorBoard shows one purged, continuous curve)."""
    flags, overrides = split_argv(argv)
    if "-m" in flags or "--multirun" in flags or override_value(overrides, "hydra.run.dir") is not None:
        return argv
    run_dir = resume_run_dir(overrides)
    if run_dir is None:
        return argv
    if not (run_dir / "checkpoints").is_dir():
        # Not a run (a sweep folder, an unrelated folder): said as it is, before the folder is claimed.
        from vae_cli.training.run_layout import no_checkpoint_message

        fail(f"trainer.resume={run_dir}: {no_checkpoint_message(run_dir)}")
    return [*argv, f"hydra.run.dir={hydra_quote(str(run_dir.resolve()))}"]


# The groups a run was trained with, taken from its checkpoint when a resume sets one of their keys.
RESUMED_GROUPS = ("model", "dataset", "likelihood", "prior", "posterior", "loss", "optim")


def resume_choices_argv(argv: list[str]) -> list[str]:
    """A resume that sets a key of a group (``trainer.resume=IWAE_RUN loss.k=3``) composes with the run's own
    options for the groups the command line does not name (``loss=iwae``): Hydra would otherwise compose the
    defaults (loss=elbo), which have no such key. Only then is the checkpoint read here (its config)."""
    flags, overrides = split_argv(argv)
    if "-m" in flags or "--multirun" in flags:
        return argv
    resume = override_value(overrides, "trainer.resume")
    if not resume or resume in ("null", "None"):
        return argv
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    named = {k for k in keys if k in RESUMED_GROUPS}
    wanted = [g for g in RESUMED_GROUPS if g not in named and any(k.startswith(f"{g}.") for k in keys)]
    if not wanted:
        return argv
    from vae_cli.process.errors import reported_errors
    from vae_cli.training.resume import saved_choices

    with reported_errors("vae-train", "interrupted."):
        choices = saved_choices(resume)
    return [*argv, *(f"{group}={choices[group]}" for group in wanted if choices.get(group))]


OPTUNA_DEFAULTS = {
    "hydra.sweeper._target_": "hydra_plugins.vae_cli_sweeps.optuna_sweeper.ResumableOptunaSweeper",
    "hydra.sweeper.storage": "'sqlite:///${hydra.sweep.dir}/optuna.db'",
    "hydra.sweeper.study_name": "vae-train",
}


def sweeper_argv(argv: list[str]) -> list[str]:
    """``hydra/sweeper=optuna``: vae-cli's resumable sweeper, with its study in SQLite in the sweep directory (so
    the same command continues it), unless the command line sets these keys itself."""
    _, overrides = split_argv(argv)
    if override_value(overrides, "hydra/sweeper") != "optuna":
        return argv
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    return [*argv, *(f"{key}={value}" for key, value in OPTUNA_DEFAULTS.items() if key not in given)]


JOBLIB_LAUNCHER = "hydra_plugins.vae_cli_sweeps.joblib_launcher.StoppableJoblibLauncher"


def launcher_argv(argv: list[str]) -> list[str]:
    """``hydra/launcher=joblib``: vae-cli's subclass of the plugin's launcher, which reports a sweep stopped while
    its workers start as a stop, not a crash (unless the command line names its own ``_target_``)."""
    _, overrides = split_argv(argv)
    if override_value(overrides, "hydra/launcher") != "joblib":
        return argv
    if any(o.split("=", 1)[0].lstrip("+~") == "hydra.launcher._target_" for o in overrides):
        return argv
    return [*argv, f"hydra.launcher._target_={JOBLIB_LAUNCHER}"]


def family_argv(argv: list[str]) -> list[str]:
    """A sweep whose swept dataset or experiment picks the model (or another family) for every job: that choice on
    the command line too, so Hydra's sweep-level config is composed with it (config/overrides.py)."""
    flags, overrides = split_argv(argv)
    if "-m" not in flags and "--multirun" not in flags:
        return argv
    from vae_cli.config.overrides import sweep_family_choices  # the schemas: only for a sweep

    return [*argv, *sweep_family_choices(overrides, Path(config_dir()))]


def fail(message: str, code: int = 2) -> None:
    print(f"vae-train: error: {message}", file=sys.stderr)
    sys.exit(code)


def torchrun_argv(argv: list[str]) -> list[str]:
    """Under torchrun (``WORLD_SIZE`` > 1) every process parses the same command line; only rank 0 may create the
    run directory. The others get a scratch directory (removed at exit) for what they write: their own
    checkpoints, which ``nan_policy=rollback`` reloads."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    if world <= 1:
        return argv
    if "-m" in argv or "--multirun" in argv:
        fail(
            "-m/--multirun cannot run under torchrun: every process would start the whole sweep. Run the sweep "
            "without torchrun (each job in one process), or start one torchrun per configuration."
        )
    if rank == 0:
        return argv
    scratch = tempfile.mkdtemp(prefix=f"vae-train-rank{rank}-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    kept = [a for a in argv if not a.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    # Quiet: rank 0 logs for the job (its console and vae-train.log); errors still reach stderr.
    return [*kept, f"hydra.run.dir={scratch}", "hydra/job_logging=disabled"]
