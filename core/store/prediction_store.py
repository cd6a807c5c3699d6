"""``PredictionStore``: the prediction log's one object. It holds the file (``LogFile``) and nothing
else; each method opens one connection (a write: one transaction) and hands it to the function of
its concern in ``writes``, ``reads`` or ``audit``, which share no state but that connection."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.store import audit, reads, writes
from core.store.connection import LogFile
from core.store.export import csv_columns, export_csv, flatten
from core.store.rows import LogEntry
from core.store.schema import known_findings


class PredictionStore:
    """The prediction log in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.file = LogFile(path)  # opened and migrated here, once

    @property
    def path(self) -> Path:
        return self.file.path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"

    # -- writing (core.store.writes): each call one transaction --------------------------------
    def log_prediction(self, entry: LogEntry) -> int:
        """Append one prediction; returns its id."""
        return self.log_many([entry])[0]

    def log_many(self, entries: Sequence[LogEntry]) -> list[int]:
        """Append several predictions in one transaction: all or none. Returns their ids."""
        with self.file.connect(write=True) as conn:
            return writes.insert(conn, entries)

    def set_verdict(self, prediction_id: int, finding: str, verdict: str | None, *,
                    reviewer: str = "", note: str = "") -> bool:
        """``reviewer``'s verdict on one finding (None removes it), audited; returns whether it changed."""
        with self.file.connect(write=True) as conn:
            return writes.set_verdict(conn, prediction_id, finding, verdict, reviewer=reviewer, note=note)

    def set_note(self, prediction_id: int, note: str, *, by: str = "") -> bool:
        """Replace a prediction's note (searchable), audited; returns whether it changed."""
        with self.file.connect(write=True) as conn:
            return writes.set_note(conn, prediction_id, note, by=by)

    def delete(self, prediction_id: int, *, by: str = "") -> bool:
        """Delete a prediction and its verdicts so its image and text leave the file (and its WAL);
        False if absent. The deletion is audited."""
        with self.file.connect(write=True) as conn:
            deleted = writes.delete(conn, prediction_id, by=by)
        if deleted:
            self.file.checkpoint()
        return deleted

    # -- reading (core.store.reads): never blocks a writer --------------------------------------
    def get(self, prediction_id: int) -> dict[str, Any] | None:
        """One prediction with its review image and verdicts, or None."""
        with self.file.connect() as conn:
            return reads.get(conn, prediction_id)

    def verdicts(self, prediction_id: int) -> dict[str, dict[str, str]]:
        """finding -> {verdict, reviewer, note, updated_at} for one prediction."""
        with self.file.connect() as conn:
            return reads.verdicts(conn, prediction_id)

    def list_predictions(self, **filters: Any) -> list[dict[str, Any]]:
        """Filtered predictions, newest first: see ``core.store.reads.list_predictions``."""
        with self.file.connect() as conn:
            return reads.list_predictions(conn, **filters)

    def search(self, query: str, *, limit: int | None = 100) -> list[dict[str, Any]]:
        """Full-text search over the text and the note; any user input is safe (see ``fts_query``)."""
        return self.list_predictions(search=query, limit=limit)

    def findings(self) -> list[str]:
        """The findings this log has columns for (core.data.labels' five first, then any a model added)."""
        with self.file.connect() as conn:
            return known_findings(conn)

    def count(self) -> int:
        with self.file.connect() as conn:
            return reads.count(conn)

    def integrity_ok(self) -> bool:
        """SQLite's integrity check, the foreign keys and the full-text index all agree."""
        with self.file.connect() as conn:
            return reads.integrity_ok(conn)

    def frame(self, **filters: Any):
        """``list_predictions`` as a pandas DataFrame, one flat column per head and finding."""
        import pandas as pd  # only the pages need it

        findings = self.findings()
        return pd.DataFrame([flatten(r, findings) for r in self.list_predictions(**filters)],
                            columns=csv_columns(findings))

    def export_csv(self, rows: list[dict[str, Any]]) -> str:
        return export_csv(rows, self.findings())

    # -- who did what (core.store.audit) -------------------------------------------------------
    def audit_log(self, *, prediction_id: int | None = None, action: str | None = None,
                  newest_first: bool = True, limit: int | None = 500) -> list[dict[str, Any]]:
        """Audit rows {at, by_user, action, prediction_id, finding, detail}, newest first."""
        with self.file.connect() as conn:
            return audit.audit_log(conn, prediction_id=prediction_id, action=action,
                                   newest_first=newest_first, limit=limit)

    def activity(self, prediction_id: int) -> list[dict[str, Any]]:
        """Every recorded change of one prediction (its deletion too), oldest first."""
        return self.audit_log(prediction_id=prediction_id, newest_first=False, limit=None)

    def deletions(self, *, limit: int | None = 500) -> list[dict[str, Any]]:
        """Who deleted which entry and when, newest first."""
        return self.audit_log(action="delete", limit=limit)
