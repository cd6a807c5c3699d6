"""Reading who did what: the ``audit`` table (schema 6) for one prediction or the whole log, deletions
included (through the connection it is handed), and its CSV export."""
from __future__ import annotations

import csv
import io
import sqlite3
from typing import Any

from core.errors import OptionError
from core.store.schema import AUDIT_ACTIONS

AUDIT_COLUMNS: list[str] = ["at", "by_user", "action", "prediction_id", "finding", "detail"]


def audit_log(conn: sqlite3.Connection, *, prediction_id: int | None = None, action: str | None = None,
              newest_first: bool = True, limit: int | None = 500) -> list[dict[str, Any]]:
    """Audit rows of {at, by_user, action, prediction_id, finding, detail}, newest first unless
    ``newest_first=False``; ``action``: one of AUDIT_ACTIONS."""
    where, params = [], []
    if prediction_id is not None:
        where.append("prediction_id = ?")
        params.append(int(prediction_id))
    if action is not None:
        if action not in AUDIT_ACTIONS:
            raise OptionError(f"action {action!r} is unknown; use one of {', '.join(AUDIT_ACTIONS)}")
        where.append("action = ?")
        params.append(action)
    order = "DESC" if newest_first else "ASC"
    sql = (f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit" + (f" WHERE {' AND '.join(where)}" if where else "")
           + f" ORDER BY at {order}, id {order}")
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    cur = conn.execute(sql, params)
    return [dict(zip(AUDIT_COLUMNS, values, strict=True)) for values in cur.fetchall()]


def export_audit_csv(rows: list[dict[str, Any]]) -> str:
    """Audit rows as CSV (at, by_user, action, prediction_id, finding, detail)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=AUDIT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in AUDIT_COLUMNS})
    return buf.getvalue()
