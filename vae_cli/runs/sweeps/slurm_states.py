"""``python -m vae_cli.runs.sweeps.slurm_states JOBID...``: SLURM job states in ``sacct --parsable2``'s format, read from
``scontrol``, for clusters without an accounting database (submitit reads states with ``sacct``).

Prints ``JobID|State|NodeList`` and one line per job (array tasks as ``<array id>_<task id>``). A job ``scontrol``
no longer knows (older than the cluster's ``MinJobAge``) is reported ``FAILED``: submitit asks only about jobs
whose result file is missing, so a job that is gone and left no result did not finish.
"""

from __future__ import annotations

import subprocess
import sys


def states(job_ids: list[str]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for job_id in job_ids:
        proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        if proc.returncode != 0 or not lines:
            rows.append((job_id, "FAILED", ""))
            continue
        for line in lines:
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            array, task = fields.get("ArrayJobId"), fields.get("ArrayTaskId")
            shown = f"{array}_{task}" if array and task and task != "N/A" else fields.get("JobId", job_id)
            rows.append((shown, fields.get("JobState", "UNKNOWN"), fields.get("NodeList", "")))
    return rows


def main(argv: list[str] | None = None) -> None:
    print("JobID|State|NodeList")
    for row in states(argv if argv is not None else sys.argv[1:]):
        print("|".join(row))


if __name__ == "__main__":
    main()
