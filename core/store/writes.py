"""Writing the prediction log: append predictions, record verdicts and notes, delete for good; every
change of a verdict or a note, and every deletion, with who made it and when (the ``audit`` table).
Each function takes the connection of one write transaction (core.store.connection.LogFile.connect)."""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from core.errors import LogEntryError, PredictionNotFound
from core.store.rows import VERDICTS, LogEntry
from core.store.schema import add_findings, known_findings, utc_iso

MAX_USER = 320  # an e-mail address is at most 254 characters; a subject identifier fits too


def checked_user(user: str | None) -> str:
    """The name an audit row records, checked: printable, at most MAX_USER characters ("" allowed)."""
    user = (user or "").strip()
    if len(user) > MAX_USER or not user.isprintable():
        raise LogEntryError(f"user {user[:40]!r} is not a name the log can record; pass an e-mail address or 'local'")
    return user


def _audit(conn: sqlite3.Connection, prediction_id: int, action: str, by: str, at: str, *, finding: str = "",
           detail: str = "") -> None:
    conn.execute("INSERT INTO audit (prediction_id, action, finding, by_user, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
                 (prediction_id, action, finding, by, at, detail))


def insert(conn: sqlite3.Connection, entries: Sequence[LogEntry]) -> list[int]:
    """Append the entries; returns their ids. The log gains a column for any finding it has not seen."""
    rows = [e.row() for e in entries]
    add_findings(conn, dict.fromkeys(f for e in entries for f in e.finding_names))
    return [conn.execute(f"INSERT INTO predictions ({', '.join(r)}) VALUES "
                         f"({', '.join(':' + c for c in r)})", r).lastrowid for r in rows]


def require(conn: sqlite3.Connection, prediction_id: int) -> None:
    if not conn.execute("SELECT 1 FROM predictions WHERE id = ?", (prediction_id,)).fetchone():
        raise PredictionNotFound(f"prediction {prediction_id} does not exist")


def set_verdict(conn: sqlite3.Connection, prediction_id: int, finding: str, verdict: str | None, *,
                reviewer: str = "", note: str = "") -> bool:
    """Record ``reviewer``'s verdict on one finding (``None`` removes it): the user the log names for
    it (the signed-in e-mail, or "local" on loopback), with the time and one audit row. A verdict equal
    to the one recorded changes nothing (it keeps who set it); returns whether anything changed."""
    if verdict is not None and verdict not in VERDICTS:
        raise LogEntryError(f"verdict {verdict!r} is unknown; use one of {', '.join(VERDICTS)}")
    by = checked_user(reviewer)
    known = known_findings(conn)
    if finding not in known:
        raise LogEntryError(f"unknown finding {finding!r}; use one of {', '.join(known)}")
    require(conn, prediction_id)
    old = conn.execute("SELECT verdict FROM verdicts WHERE prediction_id = ? AND finding = ?",
                       (prediction_id, finding)).fetchone()
    old = old[0] if old else None
    if old == verdict:
        return False
    now = utc_iso()
    if verdict is None:
        conn.execute("DELETE FROM verdicts WHERE prediction_id = ? AND finding = ?", (prediction_id, finding))
    else:
        conn.execute(
            "INSERT INTO verdicts (prediction_id, finding, verdict, reviewer, note, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (prediction_id, finding) DO UPDATE SET "
            "verdict = excluded.verdict, reviewer = excluded.reviewer, note = excluded.note, "
            "updated_at = excluded.updated_at",
            (prediction_id, finding, verdict, by, note or "", now))
    _audit(conn, prediction_id, "verdict", by, now, finding=finding,
           detail=f"{old or 'none'} → {verdict or 'none (cleared)'}")
    return True


def set_note(conn: sqlite3.Connection, prediction_id: int, note: str, *, by: str = "") -> bool:
    """Replace the free-text note of a prediction (searchable), recording ``by`` and the time on the
    prediction and in one audit row (its length, never its text). Returns whether it changed."""
    by = checked_user(by)
    old = conn.execute("SELECT note FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
    if old is None:
        raise PredictionNotFound(f"prediction {prediction_id} does not exist")
    if old[0] == (note or ""):
        return False
    now = utc_iso()
    conn.execute("UPDATE predictions SET note = ?, note_by = ?, note_at = ? WHERE id = ?",
                 (note or "", by, now, prediction_id))
    _audit(conn, prediction_id, "note", by, now,
           detail=f"note set ({len(note)} characters)" if note else "note cleared")
    return True


def delete(conn: sqlite3.Connection, prediction_id: int, *, by: str = "") -> bool:
    """Delete a prediction and its verdicts; False if absent. One audit row says who deleted it and when
    (with when it was logged and by which model, nothing of its content); the entry's earlier audit rows
    stay. The caller checkpoints the WAL after the commit, so the bytes leave it too."""
    by = checked_user(by)
    row = conn.execute("SELECT created_at, model_version, (SELECT count(*) FROM verdicts WHERE "
                       "prediction_id = p.id) FROM predictions p WHERE id = ?", (prediction_id,)).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM predictions WHERE id = ?", (prediction_id,))
    # FTS5 keeps deleted tokens in old segments until they are merged away
    conn.execute("INSERT INTO predictions_fts (predictions_fts) VALUES ('optimize')")
    created, model, n_verdicts = row
    _audit(conn, prediction_id, "delete", by, utc_iso(),
           detail=f"logged {created[:16].replace('T', ' ')} UTC, {n_verdicts} verdict(s), model {model}")
    return True
