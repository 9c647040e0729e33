"""SLURM (and submitit's local executor) for ``vae-train -m``, on hydra-submitit-launcher.

``hydra/launcher=slurm`` and ``hydra/launcher=slurm_local`` (configs/hydra/launcher/) target these classes, which are
the plugin's launchers with three changes:

- **a job that dies is a failed job, not a hung or crashed sweep**: a job killed before it wrote its result (out of
  memory, scancel, a node failure) is recorded in its run directory's ``run.json`` with submitit's reason, and the
  sweep goes on and is summarized (the plugin's ``launch`` raises on the first such job, so no summary is written);
- **job states without an accounting database**: submitit learns that a job died from ``sacct``; a cluster without
  accounting (the local one of ``scripts/local-slurm.sh``) has nothing there, and submitit would wait forever. Then
  states come from ``scontrol`` (``vae_cli.runs.sweeps.slurm_states``), which keeps finished jobs for ``MinJobAge``;
- **several tasks per job are one data-parallel run** (``hydra.launcher.tasks_per_node=N``, ``nodes=M``): each task
  gets the torch.distributed environment from SLURM's variables (submitit's helper), so the job runs the same code
  path as under torchrun: one run directory, written by rank 0.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

from vae_cli.runs.resolvers import register_resolvers

log = logging.getLogger(__name__)
register_resolvers()  # a submitit job process imports this module first (it unpickles the launcher)


def accounting_available() -> bool:
    """Whether ``sacct`` can report job states (a cluster with an accounting database)."""
    if shutil.which("sacct") is None:
        return False
    try:
        proc = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and "disabled" not in (proc.stdout + proc.stderr).lower()


def states_from_scontrol() -> None:
    """Make submitit read SLURM job states through ``vae_cli.runs.sweeps.slurm_states`` (scontrol) instead of sacct."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    def make_command(self: SlurmInfoWatcher) -> list[str] | None:
        to_check = {x.split("_")[0] for x in self._registered - self._finished}
        if not to_check:
            return None
        return [sys.executable, "-m", "vae_cli.runs.sweeps.slurm_states", *sorted(to_check)]

    SlurmInfoWatcher._make_command = make_command  # type: ignore[method-assign]


def export_distributed_environment() -> None:
    """In a SLURM job of several tasks: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT from SLURM's variables."""
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) <= 1:
        return
    import submitit

    # The GPUs stay all visible: vae-train binds cuda:LOCAL_RANK itself (vae_cli/process/distributed.py).
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def record_lost_job(job_dir: Path, reason: str) -> None:
    """A job that died without saying so: its run directory says it now (if it got as far as making one)."""
    from vae_cli.runs.status import read_status, write_status

    if job_dir.is_dir() and read_status(job_dir).get("state") not in ("finished", "failed", "interrupted"):
        write_status(job_dir, "failed", reason=reason)


class _Submitit(BaseSubmititLauncher):
    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        export_distributed_environment()
        return super().__call__(*args, **kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        params = dict(self.params)
        specific_init_keys = {"max_num_timeout"}
        init_params = {"folder": params["submitit_folder"]}
        init_params.update({f"{self._EXECUTOR}_{k}": v for k, v in params.items() if k in specific_init_keys})
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                (k if k in base else f"{self._EXECUTOR}_{k}"): v
                for k, v in params.items()
                if k not in specific_init_keys | {"submitit_folder"}
            }
        )
        if self._EXECUTOR == "slurm" and not accounting_available():
            states_from_scontrol()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        job_params = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        returns = []
        for job, (overrides, _, idx, _, _) in zip(jobs, job_params, strict=True):
            try:
                returns.append(job.results()[0])  # rank 0's, for a job of several tasks
            except Exception as exc:  # UncompletedJobError (killed, out of memory), FailedJobError (a crash)
                reason = f"SLURM job {job.job_id} ended without a result ({type(exc).__name__}): " + (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
                )
                log.error("job %d (%s) failed: %s", idx, " ".join(overrides), reason)
                with contextlib.suppress(OSError):
                    record_lost_job(sweep_dir / str(idx), reason)  # train.yaml: hydra.sweep.subdir is the job number
                returns.append(_failed_return(overrides, reason))
        return returns


def _failed_return(overrides: list[str], reason: str) -> JobReturn:
    """What a job that died returns to the sweeper: NaN (Optuna records a failed trial; the summary, a failed job)."""
    return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=math.nan)


class SlurmLauncher(_Submitit):
    _EXECUTOR = "slurm"


class LocalLauncher(_Submitit):
    _EXECUTOR = "local"
