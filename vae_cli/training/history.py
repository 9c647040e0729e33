"""The run's per-epoch history as plain files beside the event files: ``history.jsonl`` (one JSON object per
epoch) and ``history.csv`` (the same, one row per epoch, a column per metric), for pandas, spreadsheets and
scripts that do not read TensorBoard's event files.

Both are rewritten whole (atomically) at every epoch end from what the file held and the checkpoint's history,
keyed by epoch: a resumed run continues them without duplicated or missing epochs (an epoch whose checkpoint was
written but not its line is taken from the checkpoint; lines past the resumed checkpoint are replaced).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from vae_cli.process.atomic import write_text

JSONL = "history.jsonl"
CSV = "history.csv"


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``history.jsonl`` (none when it is missing; a damaged line is skipped)."""
    path = run_dir / JSONL
    records = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
    return records


def write_history(run_dir: Path, kept: list[dict[str, Any]], upto_epoch: int) -> None:
    """Rewrite both files: the file's records and ``kept`` (the checkpoint's, which win), epochs 1..``upto_epoch``."""
    by_epoch = {r["epoch"]: r for r in read_history(run_dir) if r["epoch"] <= upto_epoch}
    by_epoch.update({int(r["epoch"]): r for r in kept if int(r["epoch"]) <= upto_epoch})
    records = [_plain(by_epoch[e]) for e in sorted(by_epoch)]
    write_text(run_dir / JSONL, "".join(json.dumps(r) + "\n" for r in records), durable=False)
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(run_dir / CSV, out.getvalue(), durable=False)


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN/Inf: such a value is written as null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
