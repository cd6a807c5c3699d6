"""A compact, shippable copy of one training run's log, kept next to the weights.

    python scripts/export_runlog.py --runlog runs/runs.db --run 3 --out weights/training_log.json

The run log (core.training.run_log, SQLite) lives with the runs, not with the weights, so a fresh
clone has the model but not how it was trained. ``export_run`` keeps the run's row, every
validation epoch and at most ``max_steps`` evenly spaced logged steps (the curves' shape)
as one JSON file; ``load`` reads it back for the training monitor.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import OptionError
from core.training.run_log import read_runs, read_table

FILE = "training_log.json"


def export_run(runlog: Path, run_id: int, *, max_steps: int = 400) -> dict:
    runs = {r["id"]: r for r in read_runs(runlog)}
    if run_id not in runs:
        raise OptionError(f"run {run_id} is not in {runlog}; pick one of the runs there: {sorted(runs) or 'none'}")
    steps = read_table("steps", run_id, runlog)
    stride = max(1, -(-len(steps) // max_steps))
    kept = steps[::stride] + ([steps[-1]] if steps and (len(steps) - 1) % stride else [])
    return {"format": "cxr-fusion-trainlog/1", "run": runs[run_id], "epochs": read_table("epochs", run_id, runlog),
            "steps": kept, "steps_logged": len(steps)}


def load(weights_dir: Path) -> dict | None:
    """The exported log next to the weights, or None (absent or unreadable)."""
    try:
        data = json.loads((Path(weights_dir) / FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == "cxr-fusion-trainlog/1" else None
