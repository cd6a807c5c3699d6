"""The prediction log's schema: its tables, the flat probability columns, and the migrations
that bring any older file up to date (schema n is ``MIGRATIONS[:n]``; each runs once). A schema
change is a new function appended to ``MIGRATIONS``. sqlite-utils' ``Migrations`` runs them and
records each in its ``_sqlite_migrations`` table; files written before issue 27 kept that record in
their own ``migrations`` table, which is carried over once (``_adopt_legacy_record``).

Findings are not fixed here: the weights name them (core.model.description). Each finding the log has
seen has a row in ``findings`` and a flat REAL column ``fusion_<finding>`` in ``predictions``;
``add_findings`` adds both the first time a model logs a finding the file has not seen."""
from __future__ import annotations

import re
import sqlite3
from datetime import UTC, date, datetime

import sqlite_utils
from sqlite_utils import Migrations

from core.errors import OptionError, StoreError


def finding_key(finding: str) -> str:
    """A finding's name in column names: lower case, [a-z0-9_] only, whatever the weights call it."""
    return re.sub(r"[^a-z0-9]+", "_", finding.lower()).strip("_")


def prob_column(finding: str) -> str:
    """Flat REAL column holding the fusion probability of a finding (for filtering in SQL)."""
    return "fusion_" + finding_key(finding)



def utc_iso(value: datetime | date | str | None = None) -> str:
    """One timestamp format everywhere, so ISO strings compare correctly in SQL."""
    if value is None:
        value = datetime.now(UTC)
    elif isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise OptionError(f"{value!r} is not a date; write it as YYYY-MM-DD or an ISO date and time") from None
    if not isinstance(value, datetime):  # a plain date means its midnight, UTC
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")



_V1_FINDINGS = ("Pneumonia", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation")  # schema 1, frozen


def _m001_initial(db: sqlite_utils.Database) -> None:
    flat = ",\n".join(f"  {prob_column(f)} REAL" for f in _V1_FINDINGS)
    db.execute(f"""
CREATE TABLE predictions (
  id INTEGER PRIMARY KEY,
  created_at TEXT NOT NULL,
  model_version TEXT NOT NULL,
  image_sha256 TEXT,
  text_sha256 TEXT,
  image_png BLOB,
  image_name TEXT NOT NULL DEFAULT '',
  text TEXT NOT NULL DEFAULT '',
  text_mode TEXT NOT NULL CHECK (text_mode IN ('report', 'indication', 'none')),
  fusion TEXT NOT NULL,
  image TEXT NOT NULL,
  text_probs TEXT NOT NULL,
{flat},
  thresholds TEXT NOT NULL,
  discordant TEXT NOT NULL,
  n_discordant INTEGER NOT NULL,
  out_of_distribution INTEGER NOT NULL CHECK (out_of_distribution IN (0, 1)),
  ood_score REAL,
  source TEXT NOT NULL CHECK (source IN ('predict', 'batch', 'cli')),
  note TEXT NOT NULL DEFAULT ''
)""")
    db.execute("CREATE INDEX predictions_created_at ON predictions (created_at)")
    db.execute("""
CREATE TABLE verdicts (
  prediction_id INTEGER NOT NULL REFERENCES predictions (id) ON DELETE CASCADE,
  finding TEXT NOT NULL,
  verdict TEXT NOT NULL CHECK (verdict IN ('present', 'absent', 'uncertain')),
  reviewer TEXT NOT NULL DEFAULT '',
  note TEXT NOT NULL DEFAULT '',
  updated_at TEXT NOT NULL,
  PRIMARY KEY (prediction_id, finding)
)""")
    # Porter stemming: "effusions" finds "effusion"; the triggers keep the index in step.
    db["predictions"].enable_fts(["text", "note"], create_triggers=True, tokenize="porter")


def _m002_trust_and_names(db: sqlite_utils.Database) -> None:
    """Issue 9/10: the report-QA discordance score (sortable), the held-out evidence behind each
    fused number and whether the image alone is reliable for it, and whether ``image_name`` is the
    uploaded file's own name (1; every older row) or one made from its hash (0)."""
    db.execute("ALTER TABLE predictions ADD COLUMN discordance_score REAL NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE predictions ADD COLUMN evidence TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE predictions ADD COLUMN image_reliable TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE predictions ADD COLUMN original_name INTEGER NOT NULL DEFAULT 1")
    db.execute("CREATE INDEX predictions_discordance ON predictions (discordance_score)")


def _m003_findings(db: sqlite_utils.Database) -> None:
    """Issue 11: the findings come from the weights, so the log records which it has columns for
    (schema 1's five, in their order); ``add_findings`` adds the others when a model logs them."""
    db.execute("CREATE TABLE findings (name TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE, "
               "added_at TEXT NOT NULL)")
    now = utc_iso()
    for position, name in enumerate(_V1_FINDINGS):
        db.execute("INSERT INTO findings (name, position, added_at) VALUES (?, ?, ?)", (name, position, now))


def _m004_calibrated(db: sqlite_utils.Database) -> None:
    """Issue 20: finding -> whether the fused number logged went through the weights' recalibration map
    (a finding with too few validation positives keeps the model's own number, which the app does not
    show bare). '{}' for older rows: not recorded (the history falls back on the loaded weights)."""
    db.execute("ALTER TABLE predictions ADD COLUMN calibrated TEXT NOT NULL DEFAULT '{}'")


def _m005_decisions(db: sqlite_utils.Database) -> None:
    """Issue 26: the decision per finding (flagged / not flagged / not assessed, core.serving.decision)
    and the operating point it was made at: its name, and per assessed finding what a flag means.
    Older rows: '{}' and '' (not recorded; the history decides them with the loaded weights and says so)."""
    db.execute("ALTER TABLE predictions ADD COLUMN decision TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE predictions ADD COLUMN operating_point_name TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE predictions ADD COLUMN operating_point TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE predictions ADD COLUMN not_assessed TEXT NOT NULL DEFAULT '{}'")  # finding -> why
    db.execute("ALTER TABLE predictions ADD COLUMN n_flagged INTEGER")


AUDIT_ACTIONS: tuple[str, ...] = ("verdict", "note", "delete")


def _m006_audit(db: sqlite_utils.Database) -> None:
    """Issue 29: who did what. One ``audit`` row per change of a verdict or a note and per deletion: the
    prediction, the action, the finding (verdicts), the user (the signed-in e-mail, or "local" on loopback),
    the time and a detail that never holds the note's or the report's text (``absent → present``, ``note set
    (42 characters)``). No foreign key: a deletion keeps its audit rows though the prediction is gone. The
    current note's author and time sit on the prediction (``note_by``, ``note_at``), as the verdict's do on
    ``verdicts``. Verdicts recorded before: one audit row each, with the reviewer as typed then."""
    db.execute(f"""
CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  prediction_id INTEGER NOT NULL,
  action TEXT NOT NULL CHECK (action IN ({', '.join(repr(a) for a in AUDIT_ACTIONS)})),
  finding TEXT NOT NULL DEFAULT '',
  by_user TEXT NOT NULL,
  at TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT ''
)""")
    db.execute("CREATE INDEX audit_prediction ON audit (prediction_id, at)")
    db.execute("CREATE INDEX audit_at ON audit (at)")
    db.execute("ALTER TABLE predictions ADD COLUMN note_by TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE predictions ADD COLUMN note_at TEXT")
    db.execute("INSERT INTO audit (prediction_id, action, finding, by_user, at, detail) "
               "SELECT prediction_id, 'verdict', finding, reviewer, updated_at, "
               "verdict || ' (recorded before schema 6; reviewer as typed)' FROM verdicts ORDER BY updated_at")


MIGRATIONS = [_m001_initial, _m002_trust_and_names, _m003_findings, _m004_calibrated, _m005_decisions, _m006_audit]


def known_findings(conn: sqlite3.Connection) -> list[str]:
    """The findings this log has columns for, in the order they were first logged."""
    return [n for (n,) in conn.execute("SELECT name FROM findings ORDER BY position")]


def add_findings(conn: sqlite3.Connection, findings) -> None:
    """Give findings the log has not seen their row and flat column (inside the caller's write
    transaction: the new columns and the rows that use them commit together)."""
    known = known_findings(conn)
    columns = {prob_column(f): f for f in known}
    for finding in findings:
        if finding in known:
            continue
        column = prob_column(finding)
        if not finding_key(finding) or column in columns:
            raise StoreError(f"finding {finding!r} would share the column {column} with {columns.get(column)!r}; "
                             "rename it in the weights' labels")
        conn.execute(f"ALTER TABLE predictions ADD COLUMN {column} REAL")
        conn.execute("INSERT INTO findings (name, position, added_at) VALUES (?, ?, ?)",
                     (finding, len(known), utc_iso()))
        known.append(finding)
        columns[column] = finding


MIGRATION_SET = "cxr_prediction_log"  # this log's name in _sqlite_migrations
_LEGACY_TABLE = "migrations"  # the record of the hand-written runner (before issue 27): version, name, applied_at


def migrations() -> Migrations:
    """``MIGRATIONS`` as sqlite-utils' migration set, each under its name without the underscore
    (``m001_initial``: the names the hand-written runner recorded). Built per call from the list,
    so a test can open a file at an older schema by shortening ``MIGRATIONS``."""
    migration_set = Migrations(MIGRATION_SET)
    for migration in MIGRATIONS:
        migration_set(name=migration.__name__.lstrip("_"))(migration)
    return migration_set


def applied(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations this file has had, oldest first (its schema version is their count);
    read only, whichever runner recorded them."""
    db = sqlite_utils.Database(conn)
    legacy = ([n for (n,) in conn.execute(f"SELECT name FROM {_LEGACY_TABLE} ORDER BY version")]
              if db[_LEGACY_TABLE].exists() else [])
    return list(dict.fromkeys([*legacy, *(m.name for m in migrations().applied(db))]))


def _adopt_legacy_record(db: sqlite_utils.Database) -> None:
    """A file from before issue 27, the first time it needs a migration: its ``migrations`` rows become
    ``_sqlite_migrations`` rows (same names, same times) and the old table goes, so one table says which
    migrations ran (inside the caller's transaction: both or neither). Until then ``applied`` reads it."""
    if not db[_LEGACY_TABLE].exists():
        return
    migrations().ensure_migrations_table(db)
    db.execute(f"INSERT OR IGNORE INTO {Migrations.migrations_table} (migration_set, name, applied_at) "
               f"SELECT ?, name, applied_at FROM {_LEGACY_TABLE} ORDER BY version", [MIGRATION_SET])
    db.execute(f"DROP TABLE {_LEGACY_TABLE}")


def _refuse_newer(conn: sqlite3.Connection) -> None:
    names = applied(conn)
    known = {m.__name__.lstrip("_") for m in MIGRATIONS}
    if any(n not in known for n in names):
        raise StoreError(f"the prediction log was written by a newer version (schema {len(names)}); update the tool")


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to the current schema: every pending migration, with its record, in one
    ``BEGIN IMMEDIATE`` transaction, so two processes opening a new file never both migrate it."""
    _refuse_newer(conn)  # read first: an up-to-date file (read-only too) opens without a write
    if len(applied(conn)) == len(MIGRATIONS):
        return
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode=WAL")  # persistent; readers never block the writer
    conn.execute("BEGIN IMMEDIATE")
    db = sqlite_utils.Database(conn)
    _adopt_legacy_record(db)
    _refuse_newer(conn)  # again under the write lock: another process may have won
    migrations().apply(db)  # each migration in a savepoint of this transaction
    conn.execute("COMMIT")
