"""``vae-train``: the Hydra entry point. The only module that touches Hydra's runtime (run dir, argv).

Usage::

    vae-train dataset=fashion_mnist
    vae-train -m model.latent_dim=2,16 loss.beta=1,4
    vae-train trainer.resume=outputs/2026-01-31/12-00-00 trainer.epochs=20
    vae-train --cfg job

``main`` takes over Ctrl-C and SIGTERM before anything else (``vae_cli.training.signals``), checks the command line
(``vae_cli.config.preflight``), points a resume at its own run directory, then hands over to Hydra, whose task
function is ``vae_cli.runs.job.run_job``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

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


def config_dir() -> str:
    """Where the Hydra config tree is: inside the installed package (wheel), else the source checkout.

    ``@hydra.main`` resolves a relative ``config_path`` against this module's file, which breaks for YAML kept
    outside the package, so an absolute path is computed here. The wheel ships ``configs/`` as
    ``vae_cli/configs`` (pyproject: force-include); a source checkout or editable install has it beside
    the package.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise SystemExit(
        f"vae-train: error: the config tree (train.yaml) is neither in {here / 'configs'} nor in "
        f"{here.parent / 'configs'}; the installation is broken. Reinstall vae-cli (pip install --force-reinstall)."
    )


_reserved: dict[str, str] = {}


def unique_dir(path: str) -> str:
    """OmegaConf resolver: ``path``, or ``path_1``, ``path_2``… if a run already took it (same second).

    The directory is created here (``mkdir`` fails if it exists, so two processes cannot both get it); the
    answer is remembered, because Hydra resolves ``hydra.run.dir`` more than once.
    """
    from vae_cli.runs.job import CREATED_BY_RESOLVER

    if path in _reserved:
        return _reserved[path]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    candidate, n = path, 0
    while True:
        try:
            Path(candidate).mkdir()
            break
        except FileExistsError:
            n += 1
            candidate = f"{path}_{n}"
    _reserved[path] = candidate
    CREATED_BY_RESOLVER.add(str(Path(candidate).absolute()))
    CREATED_BY_RESOLVER.add(candidate)
    return candidate


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


def _override_value(overrides: list[str], key: str) -> str | None:
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
    resume = _override_value(overrides, "trainer.resume")
    if not resume or resume in ("null", "None"):
        return None
    path = Path(resume).expanduser()
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent
    if path.is_dir():
        return path
    return None  # run.train reports a missing or foreign path with a clear message


def _resume_argv(argv: list[str]) -> list[str]:
    """A resumed run continues in its own run directory (so TensorBoard shows one purged, continuous curve)."""
    flags, overrides = split_argv(argv)
    if "-m" in flags or "--multirun" in flags or _override_value(overrides, "hydra.run.dir") is not None:
        return argv
    run_dir = resume_run_dir(overrides)
    if run_dir is None:
        return argv
    return [*argv, f"hydra.run.dir={hydra_quote(str(run_dir.resolve()))}"]


OPTUNA_DEFAULTS = {
    "hydra.sweeper._target_": "hydra_plugins.vae_cli_sweeps.optuna_sweeper.ResumableOptunaSweeper",
    "hydra.sweeper.storage": "'sqlite:///${hydra.sweep.dir}/optuna.db'",
    "hydra.sweeper.study_name": "vae-train",
}


def _sweeper_argv(argv: list[str]) -> list[str]:
    """``hydra/sweeper=optuna``: vae-cli's resumable sweeper, with its study in SQLite in the sweep directory (so
    the same command continues it), unless the command line sets these keys itself."""
    _, overrides = split_argv(argv)
    if _override_value(overrides, "hydra/sweeper") != "optuna":
        return argv
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    return [*argv, *(f"{key}={value}" for key, value in OPTUNA_DEFAULTS.items() if key not in given)]


def _family_argv(argv: list[str]) -> list[str]:
    """A sweep whose swept dataset or experiment picks the model (or another family) for every job: that choice on
    the command line too, so Hydra's sweep-level config is composed with it (config/preflight.py)."""
    flags, overrides = split_argv(argv)
    if "-m" not in flags and "--multirun" not in flags:
        return argv
    from vae_cli.config.preflight import sweep_family_choices

    return [*argv, *sweep_family_choices(overrides, Path(config_dir()))]


def _fail(message: str, code: int = 2) -> None:
    print(f"vae-train: error: {message}", file=sys.stderr)
    sys.exit(code)


def _preflight(argv: list[str]) -> None:
    """Report bad overrides and an unwritable output folder before Hydra composes anything or data loads."""
    from vae_cli.config.preflight import check_overrides

    if any(a in INFO_FLAGS or a.startswith("--info") for a in argv):
        return
    flags, overrides = split_argv(argv)
    problems = check_overrides(overrides, Path(config_dir()))
    if problems:
        _fail("Invalid overrides on the command line:\n  - " + "\n  - ".join(problems))
    if any(a in ("--cfg", "-c") for a in flags):
        return
    multirun = "-m" in flags or "--multirun" in flags
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    explicit = _override_value(overrides, key)
    if explicit is not None and not Path(explicit).expanduser().exists():
        from vae_cli.runs.job import CREATED_BY_RESOLVER

        CREATED_BY_RESOLVER.add(str(Path(explicit).expanduser().absolute()))  # made for this run: removable again
    if explicit is not None and Path(explicit).expanduser().exists() and not Path(explicit).expanduser().is_dir():
        _fail(
            f"{key}={explicit} is a file, not a folder. Choose a folder (new or empty) for the run, or move the file."
        )
    base = Path(explicit).expanduser().parent if explicit else Path("outputs")
    problem = writable_problem(base)
    if problem:
        _fail(
            f"Cannot write run directories under {base.resolve()}: {problem}. Start vae-train from a folder you "
            f"can write to, or choose the run directory with hydra.run.dir=/writable/path "
            f"(hydra.sweep.dir=... for -m)."
        )
    if multirun and explicit is not None:
        _check_sweep_dir(Path(explicit).expanduser(), overrides)


def _check_sweep_dir(sweep_dir: Path, overrides: list[str]) -> None:
    """A sweep directory that holds another sweep is refused before any job runs (rerunning the same sweep
    continues it: finished jobs are kept, interrupted ones resumed)."""
    import yaml

    record = sweep_dir / "multirun.yaml"
    if not record.is_file():
        return
    try:
        recorded = yaml.safe_load(record.read_text())["hydra"]["overrides"]["task"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return
    mine = sorted(o for o in overrides if not o.lstrip("+~").startswith("hydra"))
    if sorted(recorded or []) != mine:
        _fail(
            f"hydra.sweep.dir={sweep_dir} holds another sweep ({' '.join(recorded or []) or 'no overrides'}), not "
            f"this one ({' '.join(mine) or 'no overrides'}); nothing was written there. Rerun that sweep's own command "
            f"to continue it, or choose another hydra.sweep.dir for this one."
        )


def writable_problem(folder: Path) -> str | None:
    """Why nothing can be written in ``folder`` (created if missing), or None if a file can be created there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _torchrun_argv(argv: list[str]) -> list[str]:
    """Under torchrun (``WORLD_SIZE`` > 1) every process parses the same command line; only rank 0 may create the
    run directory. The others get a scratch directory (removed at exit) for what they write: their own
    checkpoints, which ``nan_policy=rollback`` reloads."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    if world <= 1:
        return argv
    if "-m" in argv or "--multirun" in argv:
        _fail(
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


def _preload(argv: list[str]) -> None:
    """A single training run: start importing torch now, in the background (vae_cli/training/preload.py)."""
    flags, overrides = split_argv(argv)
    # Not for what trains nothing (help, config printing, --info) or trains in other processes (sweeps): importing
    # torch there only delays the exit (--help took 3.5 s instead of 0.6 with it).
    no_run = ("-m", "--multirun", "--cfg", "-c", "--help", "-h", "--hydra-help", "--shell-completion", "-sc")
    if any(f in no_run or f.startswith("--info") for f in flags):
        return
    if any(o.split("=", 1)[0].lstrip("+~") == "experiment" for o in overrides):
        return  # an experiment may set trainer.cpu_wait / cpu_threads: the job decides them itself
    from vae_cli.training import preload

    preload.start(_override_value(overrides, "trainer.cpu_wait"), _override_value(overrides, "trainer.cpu_threads"))


def print_version() -> None:
    from importlib.metadata import PackageNotFoundError, version

    from vae_cli import __version__

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    print(
        f"vae-train (vae-cli) {__version__}; torch {of('torch')}, torchvision {of('torchvision')}, hydra-core "
        f"{of('hydra-core')}, Python {sys.version.split()[0]}"
    )


def print_resumed_config(argv: list[str]) -> None:
    """``vae-train --cfg job trainer.resume=RUN ...``: the config the resume will really use (the checkpoint's,
    with this command line's keys on top), not the defaults."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from vae_cli.errors import reported_errors
    from vae_cli.training.checkpoint import load_with_fallback
    from vae_cli.training.resume import merge_resume_config

    _, overrides = split_argv(argv)
    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    with reported_errors("vae-train", "interrupted."):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            composed = compose(config_name="train", overrides=task)
        _, ckpt, warning = load_with_fallback(str(composed.trainer.resume))
        if warning:
            print(f"vae-train: warning: {warning}", file=sys.stderr)
        merged = merge_resume_config(composed, ckpt["config"], task, ckpt.get("batch_in_epoch", 0))
    print(OmegaConf.to_yaml(merged), end="")


def main() -> None:
    from vae_cli.training.signals import STOP, StopRequested

    STOP.install()  # first: Ctrl-C and SIGTERM get an answer from the first instant
    try:
        _main()
    except StopRequested as exc:
        from vae_cli.training.signals import describe_stop

        print(
            f"vae-train: {describe_stop(exc, getattr(exc, 'run_dir', None), getattr(exc, 'cleaned', True))}",
            file=sys.stderr,
        )
        sys.exit(exc.exit_code)


def _main() -> None:
    from vae_cli.training.signals import STOP

    argv = sys.argv[1:]
    if "--version" in argv:
        print_version()
        return
    from vae_cli.config import register_configs

    register_configs()
    from vae_cli.sweeps.resolvers import register_resolvers

    register_resolvers()
    STOP.check()
    flags, overrides = split_argv(argv)
    if any(f in ("--cfg", "-c") for f in flags) and "job" in flags and resume_run_dir(overrides) is not None:
        _preflight(argv)
        print_resumed_config(argv)
        return
    argv = _family_argv(_sweeper_argv(_resume_argv(argv)))
    _preflight(argv)
    _preload(argv)
    argv = _torchrun_argv(argv)
    STOP.check()
    sys.argv = [sys.argv[0], *argv]
    from vae_cli.runs.hydra_app import hydra_main

    hydra_main()
    from vae_cli.sweeps.summary import UNFINISHED

    if UNFINISHED:
        print(
            f"vae-train: {len(UNFINISHED)} job(s) of the sweep did not finish: {', '.join(UNFINISHED)}. Each one's "
            f"run.json and vae-train.log say why (the summary's reason column too); the same command again resumes "
            f"what was interrupted and keeps what finished.",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
