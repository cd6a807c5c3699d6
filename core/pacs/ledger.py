"""The prediction log's row for a PACS study: written once per (study, model version).

A thin adapter over core.store: the check ("is there a row for this study and version?") and the
insert run in one write transaction, so two runs, or a run resumed after ``kill -9``, never log a
study twice. The row names the study by a hash of its UID ('pacs-<12 hex>.dcm'), never by a
patient identifier; the version compared is the weights' (a "+int8" serving suffix ignored).
"""
from __future__ import annotations

from dataclasses import replace

from core.pacs.connection import short_hash
from core.pacs.sr import INT8_SUFFIX, base_version
from core.store import LogEntry, PredictionStore
from core.store.writes import insert

SOURCE = "cli"  # core.store.rows.SOURCES; the name marks the row as a PACS study


def row_name(study_uid: str) -> str:
    """The name the log keeps for a PACS study."""
    return f"pacs-{short_hash(study_uid)}.dcm"


def _versions(version: str) -> tuple[str, str]:
    v = base_version(version)
    return v, v + INT8_SUFFIX


def logged_id(store: PredictionStore, study_uid: str, version: str) -> int | None:
    """The id of the log's row for this study and model version, or None."""
    with store.file.connect() as conn:
        hit = conn.execute("SELECT id FROM predictions WHERE image_name = ? AND model_version IN (?, ?) "
                           "ORDER BY id LIMIT 1", (row_name(study_uid), *_versions(version))).fetchone()
    return int(hit[0]) if hit else None


def log_once(store: PredictionStore, study_uid: str, entry: LogEntry) -> tuple[int, bool]:
    """Log ``entry`` unless the study already has a row for the entry's model version: (row id, whether
    this call wrote it)."""
    entry = replace(entry, image_name=row_name(study_uid), original_name=True)
    with store.file.connect(write=True) as conn:
        hit = conn.execute("SELECT id FROM predictions WHERE image_name = ? AND model_version IN (?, ?) "
                           "ORDER BY id LIMIT 1", (entry.image_name, *_versions(entry.model_version))).fetchone()
        if hit:
            return int(hit[0]), False
        [row_id] = insert(conn, [entry])
        return int(row_id), True
