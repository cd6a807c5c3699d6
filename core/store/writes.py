"""Writing the prediction log: append predictions, record verdicts and notes, delete for good; every
change of a verdict or a note, and every deletion, with who made it and when (the ``audit`` table)."""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.data.labels import FINDINGS
from core.errors import LogEntryError, PredictionNotFound, StoreError
from core.store.connection import BUSY_TIMEOUT_S, Connection
from core.store.rows import VERDICTS, validated_row
from core.store.schema import add_findings, known_findings, utc_iso

MAX_USER = 320  # an e-mail address is at most 254 characters; a subject identifier fits too


def checked_user(user: str | None) -> str:
    """The name an audit row records, checked: printable, at most MAX_USER characters ("" allowed)."""
    user = (user or "").strip()
    if len(user) > MAX_USER or not user.isprintable():
        raise LogEntryError(f"user {user[:40]!r} is not a name the log can record; pass an e-mail address or 'local'")
    return user


def _audit(conn, prediction_id: int, action: str, by: str, at: str, *, finding: str = "", detail: str = "") -> None:
    conn.execute("INSERT INTO audit (prediction_id, action, finding, by_user, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
                 (prediction_id, action, finding, by, at, detail))


class Writes(Connection):
    """The write half of ``PredictionStore``; each method is one transaction."""

    def log_prediction(self, *, model_version: str, image_png: bytes | None, image_name: str | None,
                       image_sha256: str | None, text: str | None, text_mode: str,
                       fusion: Mapping[str, float], image: Mapping[str, float],
                       text_probs: Mapping[str, float | None] | None, thresholds: Mapping[str, float],
                       discordant: list[str] | tuple[str, ...] = (), out_of_distribution: bool = False,
                       ood_score: float | None = None, source: str = "predict",
                       text_sha256: str | None = None,
                       created_at: datetime | str | None = None, discordance_score: float = 0.0,
                       evidence: Mapping[str, Any] | None = None,
                       image_reliable: Mapping[str, bool] | None = None, original_name: bool = True,
                       findings: Sequence[str] | None = None, calibrated: Mapping[str, bool] | None = None,
                       decision: Mapping[str, str] | None = None, operating_point_name: str = "",
                       operating_point: Mapping[str, Mapping[str, Any]] | None = None,
                       not_assessed: Mapping[str, str] | None = None) -> int:
        """Append one prediction; returns its id. ``findings``: the model's (core.model.description; default
        the five of core.data.labels); the log gains a column for any it has not seen."""
        return self.log_many([dict(
            model_version=model_version, image_png=image_png, image_name=image_name, image_sha256=image_sha256,
            text=text, text_mode=text_mode, fusion=fusion, image=image, text_probs=text_probs,
            thresholds=thresholds, discordant=discordant, out_of_distribution=out_of_distribution,
            ood_score=ood_score, source=source, text_sha256=text_sha256, created_at=created_at,
            discordance_score=discordance_score, evidence=evidence, image_reliable=image_reliable,
            original_name=original_name, findings=findings, calibrated=calibrated, decision=decision,
            operating_point_name=operating_point_name, operating_point=operating_point,
            not_assessed=not_assessed)])[0]

    def log_many(self, entries: list[Mapping[str, Any]]) -> list[int]:
        """Append several predictions (keyword arguments of ``log_prediction`` each) in one
        transaction: all or none. Returns their ids."""
        rows = [validated_row(**e) for e in entries]
        with self._connect(write=True) as conn:
            add_findings(conn, dict.fromkeys(f for e in entries for f in (e.get("findings") or FINDINGS)))
            return [conn.execute(f"INSERT INTO predictions ({', '.join(r)}) VALUES "
                                 f"({', '.join(':' + c for c in r)})", r).lastrowid for r in rows]

    _validated = staticmethod(validated_row)  # one row, checked; kept here for callers and tests

    def set_verdict(self, prediction_id: int, finding: str, verdict: str | None, *,
                    reviewer: str = "", note: str = "") -> bool:
        """Record ``reviewer``'s verdict on one finding (``None`` removes it): the user the log names for
        it (the signed-in e-mail, or "local" on loopback), with the time and one audit row. A verdict equal
        to the one recorded changes nothing (it keeps who set it); returns whether anything changed."""
        if verdict is not None and verdict not in VERDICTS:
            raise LogEntryError(f"verdict {verdict!r} is unknown; use one of {', '.join(VERDICTS)}")
        by = checked_user(reviewer)
        with self._connect(write=True) as conn:
            known = known_findings(conn)
            if finding not in known:
                raise LogEntryError(f"unknown finding {finding!r}; use one of {', '.join(known)}")
            self._require(conn, prediction_id)
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

    def set_note(self, prediction_id: int, note: str, *, by: str = "") -> bool:
        """Replace the free-text note of a prediction (searchable), recording ``by`` and the time on the
        prediction and in one audit row (its length, never its text). Returns whether it changed."""
        by = checked_user(by)
        with self._connect(write=True) as conn:
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

    def delete(self, prediction_id: int, *, by: str = "") -> bool:
        """Delete a prediction and its verdicts so its image and text leave the file; False if absent.
        One audit row says who deleted it and when (with when it was logged and by which model, nothing
        of its content); the entry's earlier audit rows stay."""
        by = checked_user(by)
        with self._connect(write=True) as conn:
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
        self._checkpoint()
        return True

    def _checkpoint(self) -> None:
        """Copy the WAL into the file and truncate it, so deleted bytes leave the WAL too."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            with self._connect() as conn:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            if time.monotonic() > deadline:
                raise StoreError(f"deleted, but readers kept {self.path}-wal busy; "
                                 "the bytes leave it at the next delete or checkpoint")
            time.sleep(0.05)
