"""The training run log (core.training.run_log tables, core.training.run_log_export's shipped copy) reshaped into
frames for the training monitor's charts, and the run's status in words (label, ETA, alive)."""
from __future__ import annotations

import json
import math
import os

import pandas as pd

from core.data.labels import FINDINGS


def _json(value) -> dict:
    if isinstance(value, dict):
        return value
    try:
        out = json.loads(value) if value else {}
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def as_float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def steps_frame(steps: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(steps, columns=["phase", "epoch", "step", "loss", "lrs", "samples_per_s", "eta_s", "time"])
    frame["index"] = range(len(frame))  # logged step #: phases restart their own step counters
    return frame


def lrs_frame(steps: pd.DataFrame) -> pd.DataFrame:
    """Long frame: index, group, lr (steps.lrs is JSON name -> lr)."""
    rows = [{"index": i, "group": name, "lr": lr}
            for i, raw in zip(steps["index"], steps["lrs"], strict=True) for name, lr in _json(raw).items()]
    return pd.DataFrame(rows, columns=["index", "group", "lr"])


def auc_frame(epochs: list[dict], *, mode: str, head: str) -> pd.DataFrame:
    """Long frame: epoch # (across phases), label, finding, auc. Phase 'image' stores
    finding -> AUC; 'frozen'/'unfrozen' store mode -> head -> 5 AUCs in FINDINGS order."""
    rows = []
    for i, e in enumerate(epochs):
        val = _json(e.get("val_auc"))
        if e.get("phase") == "image" or all(k in FINDINGS for k in val):
            per = {f: val.get(f) for f in FINDINGS}
        else:
            values = (val.get(mode) or {}).get(head) or []
            per = dict(zip(FINDINGS, values, strict=False))  # a short list: the rest missing
        label = f"{e.get('phase')}:{e.get('epoch')}"
        rows += [{"epoch #": i, "epoch": label, "phase": e.get("phase"), "finding": f, "auc": as_float(a)}
                 for f, a in per.items()]
    return pd.DataFrame(rows, columns=["epoch #", "epoch", "phase", "finding", "auc"]).dropna(subset=["auc"])


def macro_frame(epochs: list[dict], run_label: str) -> pd.DataFrame:
    rows = [{"epoch #": i, "run": run_label, "phase": e.get("phase"), "val macro AUC": as_float(e.get("val_macro_auc"))}
            for i, e in enumerate(epochs)]
    return pd.DataFrame(rows, columns=["epoch #", "run", "phase", "val macro AUC"]).dropna(subset=["val macro AUC"])


def process_alive(pid) -> bool:
    """A run marked 'running' whose process is gone was interrupted (same host only)."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def run_label(run: dict) -> str:
    return f"#{run['id']} {run.get('name') or ''} — {run.get('status')} ({run.get('started_at', '')[:16]})"


def eta_text(seconds) -> str:
    s = as_float(seconds)
    if s is None:
        return "—"
    h, rem = divmod(int(s), 3600)
    return f"{h} h {rem // 60:02d} min" if h else f"{rem // 60} min {rem % 60:02d} s"
