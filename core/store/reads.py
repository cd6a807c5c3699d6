"""Reading the prediction log: one prediction, filtered lists, full-text search, health checks. Each
function takes the connection of one read (core.store.connection.LogFile.connect); reads never block a
writer (WAL)."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from core.errors import OptionError
from core.store.schema import known_findings, prob_column, utc_iso

_REVIEWED = "EXISTS (SELECT 1 FROM verdicts v WHERE v.prediction_id = p.id)"  # has any verdict
ORDERS = {"newest": "p.created_at DESC, p.id DESC",
          "discordance": "p.discordance_score DESC, p.created_at DESC, p.id DESC"}
SEARCH_HELP = ("Every word must match; word forms match too (effusions finds effusion). End a word "
               "with * to match its beginning: pneumon* finds pneumonia and pneumonitis.")


def fts_query(text: str) -> str:
    """Every word of user input as a quoted FTS5 string, so ``"``, ``NOT``, ``NEAR(`` and
    friends are searched for, never parsed; words are ANDed. A trailing ``*`` on a word
    (``pneumon*``) makes it a prefix search; a ``*`` anywhere else is just a character."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*") and len(word.rstrip("*")) > 0
        word = word.rstrip("*") if prefix else word
        terms.append('"' + word.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(terms)


def _row(cursor: sqlite3.Cursor, values: tuple) -> dict[str, Any]:
    row = {d[0]: v for d, v in zip(cursor.description, values, strict=True)}
    for key in ("fusion", "image", "text_probs", "thresholds", "discordant", "evidence", "image_reliable",
                "calibrated", "decision", "operating_point", "not_assessed"):
        if key in row:
            row[key] = json.loads(row[key])
    if "original_name" in row:
        row["original_name"] = bool(row["original_name"])
    for name in [k for k in row if k.startswith("fusion_")]:  # the flat columns, one per finding
        del row[name]
    row["out_of_distribution"] = bool(row["out_of_distribution"])
    if "reviewed" in row:
        row["reviewed"] = bool(row["reviewed"])
    return row


def get(conn: sqlite3.Connection, prediction_id: int) -> dict[str, Any] | None:
    """One prediction with its review image and verdicts, or None."""
    cur = conn.execute("SELECT * FROM predictions WHERE id = ?", (prediction_id,))
    values = cur.fetchone()
    if values is None:
        return None
    row = _row(cur, values)
    row["verdicts"] = verdicts(conn, prediction_id)
    row["reviewed"] = bool(row["verdicts"])
    return row


def verdicts(conn: sqlite3.Connection, prediction_id: int) -> dict[str, dict[str, str]]:
    """finding -> {verdict, reviewer, note, updated_at} for one prediction."""
    rows = conn.execute("SELECT finding, verdict, reviewer, note, updated_at FROM verdicts "
                        "WHERE prediction_id = ? ORDER BY finding", (prediction_id,))
    return {f: {"verdict": v, "reviewer": r, "note": n, "updated_at": u} for f, v, r, n, u in rows}


def list_predictions(conn: sqlite3.Connection, *, since: datetime | str | None = None,
                     until: datetime | str | None = None, finding: str | None = None, min_prob: float | None = None,
                     discordant: bool | None = None, reviewed: bool | None = None,
                     search: str | None = None, source: str | None = None,
                     out_of_distribution: bool | None = None, order: str = "newest",
                     with_images: bool = False, with_verdicts: bool = False,
                     limit: int | None = 500) -> list[dict[str, Any]]:
    """Newest first (``order="discordance"``: highest discordance score first); ``since``
    inclusive, ``until`` exclusive. ``with_verdicts`` adds each row's ``verdicts``. ``finding``
    alone keeps predictions flagged for that finding (as decided when logged); with ``min_prob`` it
    keeps fusion probability >= min_prob (of any finding when ``finding`` is None). ``search``
    is full-text over the text and the note; every word must match."""
    where, params = [], []
    if since is not None:
        where.append("p.created_at >= ?")
        params.append(utc_iso(since))
    if until is not None:
        where.append("p.created_at < ?")
        params.append(utc_iso(until))
    known = known_findings(conn) if finding is not None or min_prob is not None else []
    if finding is not None and finding not in known:
        raise OptionError(f"unknown finding {finding!r}; use one of {', '.join(known)}")
    if finding is not None and min_prob is None:
        # flagged for it, as decided when logged (core.serving.decision); rows from before decisions
        # were recorded: at the fused threshold they stored
        key = '"' + finding.replace('"', '\\"') + '"'  # a JSON path member, passed as a parameter
        where.append("(CASE WHEN p.decision != '{}' THEN json_extract(p.decision, ?) = 'flagged' "
                     f"ELSE p.{prob_column(finding)} >= COALESCE(json_extract(p.thresholds, ?), "
                     "json_extract(p.thresholds, ?), 0.5) END)")
        params += [f"$.{key}", f"$.{key}", f"$.fusion.{key}"]
    elif min_prob is not None:
        cols = [prob_column(finding)] if finding else [prob_column(f) for f in known]
        where.append("(" + " OR ".join(f"p.{c} >= ?" for c in cols) + ")")
        params += [float(min_prob)] * len(cols)
    if discordant is not None:
        where.append("p.n_discordant > 0" if discordant else "p.n_discordant = 0")
    if reviewed is not None:
        where.append(("" if reviewed else "NOT ") + _REVIEWED)
    if source is not None:
        where.append("p.source = ?")
        params.append(source)
    if out_of_distribution is not None:
        where.append("p.out_of_distribution = ?")
        params.append(int(bool(out_of_distribution)))
    if order not in ORDERS:
        raise OptionError(f"order {order!r} is unknown; use one of {', '.join(ORDERS)}")
    query = fts_query(search or "")
    if query:
        where.append("p.id IN (SELECT rowid FROM predictions_fts WHERE predictions_fts MATCH ?)")
        params.append(query)
    tail = f" WHERE {' AND '.join(where)}" if where else ""
    tail += f" ORDER BY {ORDERS[order]}"
    if limit is not None:
        tail += " LIMIT ?"
        params.append(int(limit))
    names = [n for (n,) in conn.execute("SELECT name FROM pragma_table_info('predictions')")
             if with_images or n != "image_png"]
    cur = conn.execute(f"SELECT {', '.join('p.' + n for n in names)}, {_REVIEWED} AS reviewed "
                       f"FROM predictions p{tail}", params)
    rows = [_row(cur, values) for values in cur.fetchall()]
    if with_verdicts:
        by_id = {r["id"]: r for r in rows}
        for r in rows:
            r["verdicts"] = {}
        ids = list(by_id)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for pid, f, v, who, note, at in conn.execute(
                    "SELECT prediction_id, finding, verdict, reviewer, note, updated_at FROM verdicts "
                    f"WHERE prediction_id IN ({', '.join('?' * len(chunk))})", chunk):
                by_id[pid]["verdicts"][f] = {"verdict": v, "reviewer": who, "note": note, "updated_at": at}
    return rows


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]


def integrity_ok(conn: sqlite3.Connection) -> bool:
    """SQLite's integrity check, the foreign keys and the full-text index all agree."""
    if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        return False
    if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
        return False
    try:
        conn.execute("INSERT INTO predictions_fts (predictions_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorname", "")
        if code.startswith("SQLITE_CORRUPT"):
            return False
        if not code.startswith("SQLITE_READONLY"):  # FTS5 checks through a write; skip on read-only
            raise
    return True
