"""``vae-train``: the Hydra entry point.

Usage::

    vae-train dataset=fashion_mnist
    vae-train -m model.latent_dim=2,16 loss.beta=1,4
    vae-train trainer.resume=outputs/2026-01-31/12-00-00 trainer.epochs=20
    vae-train --cfg job

``main`` takes over Ctrl-C, SIGTERM and SIGHUP before anything else (``vae_cli.process.signals``), checks the command line
(``vae_cli.config.overrides``), points a resume at its own run directory, then hands over to Hydra, whose task
function is ``vae_cli.runs.job.run_job``.
"""

from __future__ import annotations

import signal
import sys

from vae_cli.commands.train_argv import (
    family_argv,
    launcher_argv,
    override_value,
    resume_argv,
    resume_choices_argv,
    resume_run_dir,
    split_argv,
    sweeper_argv,
    torchrun_argv,
)
from vae_cli.process.signals import SIGNALS, STOP, StopRequested, describe_stop
from vae_cli.process.workers import forward_stop, mark_sweep_parent


def preload(argv: list[str]) -> None:
    """A single training run: start importing torch now, in the background (vae_cli/process/preload.py)."""
    flags, overrides = split_argv(argv)
    # Not for what trains nothing (help, config printing, --info) or trains in other processes (sweeps): importing
    # torch there only delays the exit (--help took 3.5 s instead of 0.6 with it).
    no_run = ("-m", "--multirun", "--cfg", "-c", "--help", "-h", "--hydra-help", "--shell-completion", "-sc")
    if any(f in no_run or f.startswith("--info") for f in flags):
        return
    if any(o.split("=", 1)[0].lstrip("+~") == "experiment" for o in overrides):
        return  # an experiment may set trainer.cpu_wait / cpu_threads: the job decides them itself
    from vae_cli.process import preload as background

    background.start(override_value(overrides, "trainer.cpu_wait"), override_value(overrides, "trainer.cpu_threads"))


def main() -> None:
    STOP.install()  # first: Ctrl-C and SIGTERM get an answer from the first instant
    try:
        _main()
    except StopRequested as exc:
        if getattr(exc, "sweep", False):  # a launcher whose workers the stop reached while they started
            message = (
                f"the sweep was stopped by {exc.name} while its workers were starting: jobs that had begun keep "
                f"their last checkpoint (recorded as interrupted, or as killed where a worker was ended with the "
                f"pool); jobs not started were left alone. The same command continues it."
            )
        else:
            message = describe_stop(exc, getattr(exc, "run_dir", None), getattr(exc, "cleaned", True))
        print(f"vae-train: {message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    finally:
        # Everything is written and said; what is left is the interpreter's teardown (about a second with torch
        # loaded), after which Python no longer runs handlers. A signal there would turn a finished run's exit
        # status into a kill; the process ends by itself in a moment.
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def _main() -> None:
    argv = sys.argv[1:]
    if "--version" in argv:
        from vae_cli.commands.train_info import print_version

        print_version()
        return
    from vae_cli.commands.train_preflight import preflight
    from vae_cli.config.schema import register_configs
    from vae_cli.runs.resolvers import register_resolvers

    register_configs()
    register_resolvers()
    STOP.check()
    argv = resume_choices_argv(argv)
    flags, overrides = split_argv(argv)
    if "--help" in flags or "-h" in flags:
        from vae_cli.commands.train_help import help_text

        print(help_text(overrides))
        return
    if any(f in ("--cfg", "-c") for f in flags) and "job" in flags and resume_run_dir(overrides) is not None:
        from vae_cli.commands.train_info import print_resumed_config

        preflight(argv)
        print_resumed_config(argv)
        return
    argv = family_argv(launcher_argv(sweeper_argv(resume_argv(argv))))
    preflight(argv)
    preload(argv)
    argv = torchrun_argv(argv)
    STOP.check()
    sys.argv = [sys.argv[0], *argv]
    if "-m" in flags or "--multirun" in flags:
        # A sweep's workers learn this process's pid, and a stop signal sent here reaches them too.
        mark_sweep_parent()
        STOP.on_signal.append(forward_stop)
    from vae_cli.runs.hydra_app import hydra_main

    hydra_main()
    from vae_cli.runs.sweeps.summary import SUMMARIZED, UNFINISHED

    if STOP.received is not None and SUMMARIZED and not UNFINISHED:
        name = signal.Signals(STOP.received).name
        print(
            f"vae-train: {name} arrived after every job of the sweep had finished: nothing was stopped, and the "
            f"summary is complete.",
            file=sys.stderr,
        )
        return
    if STOP.received is not None:  # the workers have checkpointed and said so; the summary is written
        name = signal.Signals(STOP.received).name
        print(
            f"vae-train: the sweep was stopped by {name}: its running jobs checkpointed and are recorded as "
            f"interrupted, the jobs not started were left alone. The same command continues it (finished jobs are "
            f"kept, interrupted ones resume).",
            file=sys.stderr,
        )
        sys.exit(128 + STOP.received)
    if UNFINISHED:
        print(
            f"vae-train: {len(UNFINISHED)} job(s) of the sweep did not finish: {', '.join(UNFINISHED)}. The "
            f"summary's reason column says why (and a started job's run.json and vae-train.log); the same command "
            f"again resumes what was interrupted and keeps what finished.",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
