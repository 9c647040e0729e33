"""What vae-train checks before Hydra composes anything or data loads: the overrides against the typed schema
(``vae_cli.config.overrides``), and the folder the run (or sweep) will be written to."""

from __future__ import annotations

import tempfile
from pathlib import Path

from vae_cli.commands.train_argv import INFO_FLAGS, fail, override_value, split_argv
from vae_cli.config.overrides import check_overrides
from vae_cli.config.tree import config_dir
from vae_cli.runs.resolvers import CREATED_BY_RESOLVER, unique_dir


def preflight(argv: list[str]) -> None:
    """Report bad overrides and an unwritable output folder before Hydra composes anything or data loads."""
    if any(a in INFO_FLAGS or a.startswith("--info") for a in argv):
        return
    flags, overrides = split_argv(argv)
    problems = check_overrides(overrides, Path(config_dir())) + launcher_problems(overrides)
    if problems:
        fail("Invalid overrides on the command line:\n  - " + "\n  - ".join(problems))
    if any(a in ("--cfg", "-c") for a in flags):
        return
    multirun = "-m" in flags or "--multirun" in flags
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    explicit = override_value(overrides, key)
    if explicit is not None and "${" in explicit:
        problem = interpolation_problem(key, overrides)
        if problem:
            fail(problem)
        return  # Hydra resolves it
    if explicit is not None and not Path(explicit).expanduser().exists():
        CREATED_BY_RESOLVER.add(str(Path(explicit).expanduser().absolute()))  # made for this run: removable again
    if explicit is not None and Path(explicit).expanduser().exists() and not Path(explicit).expanduser().is_dir():
        fail(f"{key}={explicit} is a file, not a folder. Choose a folder (new or empty) for the run, or move the file.")
    base = Path(explicit).expanduser().parent if explicit else Path("outputs")
    problem = writable_problem(base)
    if problem:
        fail(
            f"Cannot write run directories under {base.resolve()}: {problem}. Start vae-train from a folder you "
            f"can write to, or choose the run directory with hydra.run.dir=/writable/path "
            f"(hydra.sweep.dir=... for -m)."
        )
    if multirun and explicit is not None:
        check_sweep_dir(Path(explicit).expanduser(), overrides)


def interpolation_problem(key: str, overrides: list[str]) -> str | None:
    """Why ``key`` (hydra.run.dir / hydra.sweep.dir, given with an interpolation) does not resolve, or None. Hydra
    would fail on it with a traceback; resolved here with the run-directory resolver made harmless (it creates the
    folder it names)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra") or o.startswith(f"{key}=")]
    OmegaConf.register_new_resolver("unique_dir", lambda path: path, replace=True)
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name="train", overrides=task, return_hydra_config=True)
        OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except OmegaConfBaseException as exc:
        return (
            f"Could not resolve {key}: {str(exc).splitlines()[0]}. An interpolation there must name a key that "
            f"exists or a resolver (e.g. hydra.run.dir='runs/${{now:%H-%M-%S}}'); nothing was written."
        )
    finally:
        OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True, replace=True)
    return None


def launcher_problems(overrides: list[str]) -> list[str]:
    """Values of the sweep launchers' own keys that they would fail on with a traceback."""
    problems = []
    n_jobs = override_value(overrides, "hydra.launcher.n_jobs")
    if n_jobs is not None:
        try:
            valid = int(n_jobs) != 0
        except ValueError:
            valid = False
        if not valid:
            problems.append(
                f"hydra.launcher.n_jobs={n_jobs} is not valid: joblib runs that many jobs at a time, a whole number "
                f"other than 0 (-1: one per core, -2: all cores but one)."
            )
    return problems


def check_sweep_dir(sweep_dir: Path, overrides: list[str]) -> None:
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
        fail(
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
