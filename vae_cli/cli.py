"""``vae-train``: the Hydra entry point. The only module that touches Hydra's runtime (run dir, argv).

Usage::

    vae-train dataset=fashion_mnist
    vae-train -m model.latent_dim=2,16 loss.beta=1,4
    vae-train trainer.resume=outputs/2026-01-31/12-00-00 trainer.epochs=20
    vae-train --cfg job
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vae_cli.config import register_configs
from vae_cli.errors import reported_errors

log = logging.getLogger("vae_cli")


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
    return candidate


def _resume_argv(argv: list[str]) -> list[str]:
    """A resumed run continues in its own run directory (so TensorBoard shows one purged, continuous curve).

    Hydra's record of the resume command goes into ``.hydra/resume-<time>/`` so the original ``.hydra/`` files
    are kept.
    """
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("trainer.resume=")), None)
    if not resume or resume in ("null", "None") or any(a.startswith("hydra.run.dir=") for a in argv):
        return argv
    if "-m" in argv or "--multirun" in argv:
        return argv
    path = Path(resume).expanduser()
    if path.is_file() and path.parent.name == "checkpoints":
        run_dir = path.parent.parent
    elif path.is_dir():
        run_dir = path
    else:
        return argv  # run.train reports the missing path with a clear message
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return [*argv, f"hydra.run.dir={run_dir.resolve()}", f"hydra.output_subdir=.hydra/resume-{stamp}"]


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    from vae_cli.training.cpu_threads import apply_wait_policy

    # Before torch is imported: the OpenMP runtime reads its wait policy once.
    wait_policy = apply_wait_policy(cfg.trainer.cpu_wait)
    from vae_cli.training.allocator import keep_freed_memory_for_reuse
    from vae_cli.training.run import train  # torch and friends load only when a run really starts (fast --help)

    log.info("CPU thread waits: %s", wait_policy)
    log.info("CPU memory: %s", keep_freed_memory_for_reuse())

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    with reported_errors("vae-train", f"stopped at once (second Ctrl-C); the last checkpoint in {run_dir} is intact."):
        metrics = train(cfg, run_dir, overrides=list(hc.overrides.task))
    # The returned value lets Hydra sweepers (e.g. Optuna) optimize the final validation loss.
    value = metrics.get("val/loss")
    return float(value) if value is not None else None


def _fail(message: str) -> None:
    print(f"vae-train: error: {message}", file=sys.stderr)
    sys.exit(2)


def _preflight(argv: list[str]) -> None:
    """Report bad overrides and an unwritable output folder before Hydra composes anything or data loads."""
    from vae_cli.config.preflight import check_overrides

    if any(a in ("--help", "-h", "--hydra-help", "--version", "--info", "-i") or a.startswith("--info") for a in argv):
        return
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    problems = check_overrides(overrides, Path(config_dir()))
    if problems:
        _fail("Invalid overrides on the command line:\n  - " + "\n  - ".join(problems))
    if any(a in ("--cfg", "-c") for a in argv):
        return
    explicit = next((a.split("=", 1)[1] for a in argv if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))), None)
    base = Path(explicit).parent if explicit else Path("outputs")
    problem = writable_problem(base)
    if problem:
        _fail(
            f"Cannot write run directories under {base.resolve()}: {problem}. Start vae-train from a folder you "
            f"can write to, or choose the run directory with hydra.run.dir=/writable/path "
            f"(hydra.sweep.dir=... for -m)."
        )


def writable_problem(folder: Path) -> str | None:
    """Why nothing can be written in ``folder`` (created if missing), or None if a file can be created there."""
    import tempfile

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
    return [*kept, f"hydra.run.dir={scratch}", "hydra.output_subdir=null", "hydra/job_logging=disabled"]


def main() -> None:
    register_configs()
    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", unique_dir)
    argv = _resume_argv(sys.argv[1:])
    _preflight(argv)
    argv = _torchrun_argv(argv)
    sys.argv = [sys.argv[0], *argv]
    _hydra_main()


if __name__ == "__main__":
    main()
