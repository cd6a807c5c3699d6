"""Training run log in SQLite (sqlite-utils): what the training-monitor page reads live.

Tables: ``runs`` (one row a run), ``steps`` (loss, learning rates, throughput, ETA per
logged step), ``epochs`` (validation AUC per finding per epoch). Each write opens its own
short connection in WAL mode, so a reader (the app) never blocks the trainer.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from core.errors import CxrError

DEFAULT_RUNLOG = Path(__file__).resolve().parents[2] / "runs" / "runs.db"  # <repo>/runs/runs.db


def runlog_path() -> Path:
    return Path(os.environ.get("CXR_RUNLOG", DEFAULT_RUNLOG))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _db(path: Path) -> sqlite_utils.Database:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=10)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    return db


class RunLog:
    """Writer used by the trainer (rank 0 only)."""

    def __init__(self, path: Path | None = None, *, name: str, config: dict) -> None:
        self.path = Path(path or runlog_path())
        self.started = time.time()
        db = _db(self.path)
        with db.conn:
            db["runs"].insert({"name": name, "started_at": _now(), "finished_at": None, "status": "running",
                               "config": json.dumps(config, default=str), "phase": None, "best_val_macro_auc": None,
                               "pid": os.getpid()}, pk="id", alter=True)
            self.run_id = db.execute("select max(id) from runs").fetchone()[0]
        db.conn.close()

    def _write(self, table: str, row: dict) -> None:
        db = _db(self.path)
        with db.conn:
            db[table].insert(dict(row, run_id=self.run_id, time=_now()), alter=True)
        db.conn.close()

    def step(self, *, phase: str, epoch: int, step: int, loss: float, lrs: dict, samples_per_s: float,
             eta_s: float | None) -> None:
        self._write("steps", {"phase": phase, "epoch": epoch, "step": step, "loss": loss,
                              "lrs": json.dumps(lrs), "samples_per_s": samples_per_s, "eta_s": eta_s})

    def epoch(self, *, phase: str, epoch: int, val_auc: dict, val_macro_auc: float, train_loss: float,
              seconds: float, samples_per_s: float) -> None:
        self._write("epochs", {"phase": phase, "epoch": epoch, "val_auc": json.dumps(val_auc),
                               "val_macro_auc": val_macro_auc, "train_loss": train_loss,
                               "seconds": seconds, "samples_per_s": samples_per_s})
        self.update(phase=phase)

    def update(self, **fields) -> None:
        db = _db(self.path)
        with db.conn:
            db["runs"].update(self.run_id, fields, alter=True)
        db.conn.close()

    def finish(self, status: str = "finished", **fields) -> None:
        self.update(status=status, finished_at=_now(), **fields)


class RunLogError(CxrError, RuntimeError):
    """The run log cannot be read (damaged, locked, or not a run log)."""


@contextmanager
def _reading(path: Path) -> Iterator[sqlite_utils.Database]:
    """The run log open for one read; SQLite's failures become one RunLogError."""
    db = None
    try:
        db = _db(path)
        yield db
    except sqlite3.Error as exc:
        raise RunLogError(f"cannot read the run log {path} ({exc}); wait for the trainer's write or move "
                          "the damaged file aside") from None
    finally:
        if db is not None:
            db.conn.close()


def read_runs(path: Path | None = None) -> list[dict]:
    path = Path(path or runlog_path())
    if not path.is_file():
        return []
    with _reading(path) as db:
        return list(db["runs"].rows_where(order_by="id desc")) if "runs" in db.table_names() else []


def read_table(table: str, run_id: int, path: Path | None = None) -> list[dict]:
    path = Path(path or runlog_path())
    if not path.is_file():
        return []
    with _reading(path) as db:
        if table not in db.table_names():
            return []
        return list(db[table].rows_where("run_id = ?", [run_id], order_by="rowid"))
