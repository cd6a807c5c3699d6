"""The prediction log: every prediction the app or a CLI makes, in one SQLite file, for review.

    store = PredictionStore()                  # $CXR_DB_PATH, else <repo>/var/predictions.db
    pid = store.log_prediction(model_version=..., image_png=..., ...)
    store.set_verdict(pid, "Edema", "absent", reviewer="jd")
    rows = store.list_predictions(finding="Edema", reviewed=False)

What is stored, per prediction: a downscaled review copy of the image (PNG, at most 256 px
on a side, decoded from pixels only), the SHA-256 of the uploaded image and of the text,
the uploaded file's base name, the text the model read and its mode, the three heads'
probabilities, the thresholds, the discordant findings, the out-of-distribution flag and
score, the model version, where the call came from, and the reviewer's note and per-finding
verdicts. What is never stored: DICOM headers or any identifier read from them (patient
name, id, birth date, accession number) — the store's API has no field for them — nor the
full-resolution image. ``delete`` removes a prediction's bytes from the file, not just its row.

Verdicts are the reviewer's ground truth per finding: ``present``, ``absent`` or
``uncertain`` (not agreement with the model, so the log can later score the model).

Every call opens its own short-lived connection, so no connection crosses Streamlit's
session threads; writes run in ``BEGIN IMMEDIATE`` transactions under a 10 s busy timeout,
so concurrent writers queue instead of failing, and a failed write leaves nothing behind.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sqlite3
import struct
import time
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import sqlite_utils

from core.labels import FINDINGS, HEADS, TEXT_MODES

REPO = Path(__file__).resolve().parents[1]
BUSY_TIMEOUT_S = 10.0
MAX_REVIEW_PX = 256
VERDICTS: tuple[str, ...] = ("present", "absent", "uncertain")
SOURCES: tuple[str, ...] = ("predict", "batch", "cli")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_REVIEWED = "EXISTS (SELECT 1 FROM verdicts v WHERE v.prediction_id = p.id)"  # has any verdict


class StoreError(RuntimeError):
    """The prediction log cannot be read or written."""


class StoreReadOnlyError(StoreError):
    """The database file (or its folder) cannot be written."""


class StoreFullError(StoreError):
    """The disk holding the database is full."""


class PredictionNotFound(StoreError):
    """No prediction has the given id."""


def prob_column(finding: str) -> str:
    """Flat REAL column holding the fusion probability of a finding (for filtering in SQL)."""
    return f"fusion_{finding.lower()}"


def default_path() -> Path:
    env = os.environ.get("CXR_DB_PATH")
    return Path(env).expanduser() if env else REPO / "var" / "predictions.db"


def utc_iso(value: datetime | date | str | None = None) -> str:
    """One timestamp format everywhere, so ISO strings compare correctly in SQL."""
    if value is None:
        value = datetime.now(timezone.utc)
    elif isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO date or time") from None
    if not isinstance(value, datetime):  # a plain date means its midnight, UTC
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


# -- migrations: version n is MIGRATIONS[n - 1]; each runs once, in one transaction ---------

def _m001_initial(db: sqlite_utils.Database) -> None:
    flat = ",\n".join(f"  {prob_column(f)} REAL" for f in FINDINGS)
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


MIGRATIONS = [_m001_initial, _m002_trust_and_names]
ORDERS = {"newest": "p.created_at DESC, p.id DESC",
          "discordance": "p.discordance_score DESC, p.created_at DESC, p.id DESC"}


def _applied_versions(conn: sqlite3.Connection) -> set[int]:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'").fetchone()
    return {v for (v,) in conn.execute("SELECT version FROM migrations")} if exists else set()


def _migrate(conn: sqlite3.Connection) -> None:
    wanted = set(range(1, len(MIGRATIONS) + 1))
    applied = _applied_versions(conn)  # read first: an up-to-date read-only file still opens
    if applied and max(applied) > len(MIGRATIONS):
        raise StoreError(f"the prediction log was written by a newer version (schema {max(applied)}); update the tool")
    if wanted <= applied:
        return
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode=WAL")  # persistent; readers never block the writer
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE IF NOT EXISTS migrations "
                 "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    applied = _applied_versions(conn)  # again under the write lock: another process may have won
    db = sqlite_utils.Database(conn)
    for version, migration in enumerate(MIGRATIONS, 1):
        if version not in applied:
            migration(db)
            conn.execute("INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
                         (version, migration.__name__.lstrip("_"), utc_iso()))
    conn.execute("COMMIT")


# -- validation -------------------------------------------------------------------------------

def _png_size(data: bytes) -> tuple[int, int]:
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("image_png must be PNG bytes")
    return struct.unpack(">II", data[16:24])


def _probs(name: str, values: Mapping[str, float | None] | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for finding, value in (values or {}).items():
        if finding not in FINDINGS:
            raise ValueError(f"{name} has unknown finding {finding!r}; expected one of {', '.join(FINDINGS)}")
        if value is not None:
            value = float(value)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name}[{finding!r}] = {value} is not a probability in [0, 1]")
        out[finding] = value
    return out


def _thresholds(values: Mapping[str, Any]) -> dict[str, Any]:
    """finding -> threshold (the fused head's), or head -> finding -> threshold (every head's)."""
    if values and all(isinstance(v, Mapping) for v in values.values()):
        unknown = [h for h in values if h not in HEADS]
        if unknown:
            raise ValueError(f"thresholds has unknown heads {unknown}; expected {', '.join(HEADS)}")
        return {head: _probs(f"thresholds[{head!r}]", per) for head, per in values.items()}
    return _probs("thresholds", values)


def _score(value) -> float:
    value = float(value or 0.0)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"discordance_score must be a finite number >= 0, not {value}")
    return value


def _evidence(values: Mapping[str, Any] | None) -> dict[str, dict]:
    """finding -> {auc, ci, positives, reliable, source}: only those keys, JSON-safe."""
    out = {}
    for finding, e in (values or {}).items():
        if finding not in FINDINGS:
            raise ValueError(f"evidence has unknown finding {finding!r}")
        e = e or {}
        auc = e.get("auc")
        out[finding] = {"auc": None if auc is None or auc != auc else float(auc),
                        "ci": list(e["ci"]) if e.get("ci") else None, "positives": int(e.get("positives") or 0),
                        "reliable": bool(e.get("reliable")), "source": str(e.get("source") or "")}
    return out


def _sha256(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{name} must be 64 hex digits")
    return value


def hashed_name(name: str | None, data: bytes) -> str:
    """A stored name that names no one: 'upload-<first 12 hex of the file's SHA-256>' plus the
    original extension (PACS exports often name files after patients)."""
    suffix = Path(safe_name(name)).suffix.lower()
    suffix = suffix if suffix in (".png", ".jpg", ".jpeg", ".dcm", ".dicom") else ""
    return f"upload-{hashlib.sha256(data).hexdigest()[:12]}{suffix}"


def safe_name(name: str | None) -> str:
    """Base name only: a client may send a full path, which can name a patient or a folder."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if c.isprintable())[:255]


def _error(exc: sqlite3.Error, path: Path) -> StoreError:
    code = getattr(exc, "sqlite_errorname", "") or ""
    if code.startswith("SQLITE_READONLY"):
        return StoreReadOnlyError(f"the prediction log {path} is read-only; make it writable or set CXR_DB_PATH")
    if code == "SQLITE_FULL":
        return StoreFullError(f"the disk holding {path} is full; nothing was written")
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreError(f"the prediction log {path} stayed locked for over {BUSY_TIMEOUT_S:g} s; try again")
    if code.startswith("SQLITE_CANTOPEN"):
        return StoreError(f"cannot open the prediction log {path}; check that its folder is writable")
    if code in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return StoreError(f"{path} is not a valid prediction log ({exc})")
    return StoreError(f"prediction log {path}: {exc}")


class PredictionStore:
    """The prediction log in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder for {self.path}: {exc.strerror}") from exc
        with self._connect() as conn:
            _migrate(conn)

    def __repr__(self) -> str:
        return f"<PredictionStore {self.path}>"

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, the driver adds none
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for one operation; ``write`` wraps it in one BEGIN IMMEDIATE transaction."""
        conn = None
        try:
            conn = self._open()
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed, not left readable
            if write:
                conn.execute("BEGIN IMMEDIATE")
            yield conn
            if write:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn is not None and conn.in_transaction:
                conn.rollback()
            raise _error(exc, self.path) from exc
        except BaseException:
            if conn is not None and conn.in_transaction:
                conn.rollback()
            raise
        finally:
            if conn is not None:
                conn.close()

    # -- writing ---------------------------------------------------------------------------

    def log_prediction(self, *, model_version: str, image_png: bytes | None, image_name: str | None,
                       image_sha256: str | None, text: str | None, text_mode: str,
                       fusion: Mapping[str, float], image: Mapping[str, float],
                       text_probs: Mapping[str, float | None] | None, thresholds: Mapping[str, float],
                       discordant: list[str] | tuple[str, ...] = (), out_of_distribution: bool = False,
                       ood_score: float | None = None, source: str = "predict",
                       text_sha256: str | None = None,
                       created_at: datetime | str | None = None, discordance_score: float = 0.0,
                       evidence: Mapping[str, Any] | None = None,
                       image_reliable: Mapping[str, bool] | None = None, original_name: bool = True) -> int:
        """Append one prediction; returns its id."""
        return self.log_many([dict(
            model_version=model_version, image_png=image_png, image_name=image_name, image_sha256=image_sha256,
            text=text, text_mode=text_mode, fusion=fusion, image=image, text_probs=text_probs,
            thresholds=thresholds, discordant=discordant, out_of_distribution=out_of_distribution,
            ood_score=ood_score, source=source, text_sha256=text_sha256, created_at=created_at,
            discordance_score=discordance_score, evidence=evidence, image_reliable=image_reliable,
            original_name=original_name)])[0]

    def log_many(self, entries: list[Mapping[str, Any]]) -> list[int]:
        """Append several predictions (keyword arguments of ``log_prediction`` each) in one
        transaction: all or none. Returns their ids."""
        rows = [self._validated(**e) for e in entries]
        with self._connect(write=True) as conn:
            return [conn.execute(f"INSERT INTO predictions ({', '.join(r)}) VALUES "
                                 f"({', '.join(':' + c for c in r)})", r).lastrowid for r in rows]

    @staticmethod
    def _validated(*, model_version: str, image_png: bytes | None, image_name: str | None,
                   image_sha256: str | None, text: str | None, text_mode: str,
                   fusion: Mapping[str, float], image: Mapping[str, float],
                   text_probs: Mapping[str, float | None] | None, thresholds: Mapping[str, float],
                   discordant: list[str] | tuple[str, ...] = (), out_of_distribution: bool = False,
                   ood_score: float | None = None, source: str = "predict", text_sha256: str | None = None,
                   created_at: datetime | str | None = None, discordance_score: float = 0.0,
                   evidence: Mapping[str, Any] | None = None, image_reliable: Mapping[str, bool] | None = None,
                   original_name: bool = True) -> dict[str, Any]:
        if text_mode not in TEXT_MODES:
            raise ValueError(f"text_mode must be one of {', '.join(TEXT_MODES)}, not {text_mode!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        if image_png is not None:
            image_png = bytes(image_png)
            width, height = _png_size(image_png)
            if max(width, height) > MAX_REVIEW_PX:
                raise ValueError(f"image_png must be a review copy of at most {MAX_REVIEW_PX} px a side, "
                                 f"not {width}x{height}")
        discordant = list(discordant or ())
        unknown = [f for f in discordant if f not in FINDINGS]
        if unknown:
            raise ValueError(f"discordant has unknown findings {unknown}")
        text = text or ""
        if text_sha256 is None and text:
            text_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        fusion_p = _probs("fusion", fusion)
        row: dict[str, Any] = {
            "created_at": utc_iso(created_at),
            "model_version": str(model_version),
            "image_sha256": _sha256("image_sha256", image_sha256),
            "text_sha256": _sha256("text_sha256", text_sha256),
            "image_png": image_png,
            "image_name": safe_name(image_name),
            "text": text,
            "text_mode": text_mode,
            "fusion": json.dumps(fusion_p),
            "image": json.dumps(_probs("image", image)),
            "text_probs": json.dumps(_probs("text_probs", text_probs)),
            "thresholds": json.dumps(_thresholds(thresholds)),
            "discordant": json.dumps(discordant),
            "n_discordant": len(discordant),
            "out_of_distribution": int(bool(out_of_distribution)),
            "ood_score": None if ood_score is None else float(ood_score),
            "source": source,
            **{prob_column(f): fusion_p.get(f) for f in FINDINGS},
            "discordance_score": _score(discordance_score),
            "evidence": json.dumps(_evidence(evidence)),
            "image_reliable": json.dumps({f: bool(v) for f, v in (image_reliable or {}).items() if f in FINDINGS}),
            "original_name": int(bool(original_name)),
        }
        return row

    def set_verdict(self, prediction_id: int, finding: str, verdict: str | None, *,
                    reviewer: str = "", note: str = "") -> None:
        """Record the reviewer's verdict on one finding (``None`` removes it)."""
        if finding not in FINDINGS:
            raise ValueError(f"unknown finding {finding!r}; expected one of {', '.join(FINDINGS)}")
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        with self._connect(write=True) as conn:
            self._require(conn, prediction_id)
            if verdict is None:
                conn.execute("DELETE FROM verdicts WHERE prediction_id = ? AND finding = ?", (prediction_id, finding))
                return
            conn.execute(
                "INSERT INTO verdicts (prediction_id, finding, verdict, reviewer, note, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (prediction_id, finding) DO UPDATE SET "
                "verdict = excluded.verdict, reviewer = excluded.reviewer, note = excluded.note, "
                "updated_at = excluded.updated_at",
                (prediction_id, finding, verdict, reviewer or "", note or "", utc_iso()))

    def set_note(self, prediction_id: int, note: str) -> None:
        """Replace the free-text note of a prediction (searchable)."""
        with self._connect(write=True) as conn:
            if not conn.execute("UPDATE predictions SET note = ? WHERE id = ?", (note or "", prediction_id)).rowcount:
                raise PredictionNotFound(f"prediction {prediction_id} does not exist")

    def delete(self, prediction_id: int) -> bool:
        """Delete a prediction and its verdicts so its image and text leave the file; False if absent."""
        with self._connect(write=True) as conn:
            if not conn.execute("DELETE FROM predictions WHERE id = ?", (prediction_id,)).rowcount:
                return False
            # FTS5 keeps deleted tokens in old segments until they are merged away
            conn.execute("INSERT INTO predictions_fts (predictions_fts) VALUES ('optimize')")
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

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def _require(conn: sqlite3.Connection, prediction_id: int) -> None:
        if not conn.execute("SELECT 1 FROM predictions WHERE id = ?", (prediction_id,)).fetchone():
            raise PredictionNotFound(f"prediction {prediction_id} does not exist")

    @staticmethod
    def _row(cursor: sqlite3.Cursor, values: tuple) -> dict[str, Any]:
        row = {d[0]: v for d, v in zip(cursor.description, values)}
        for key in ("fusion", "image", "text_probs", "thresholds", "discordant", "evidence", "image_reliable"):
            if key in row:
                row[key] = json.loads(row[key])
        if "original_name" in row:
            row["original_name"] = bool(row["original_name"])
        for finding in FINDINGS:
            row.pop(prob_column(finding), None)
        row["out_of_distribution"] = bool(row["out_of_distribution"])
        if "reviewed" in row:
            row["reviewed"] = bool(row["reviewed"])
        return row

    def get(self, prediction_id: int) -> dict[str, Any] | None:
        """One prediction with its review image and verdicts, or None."""
        with self._connect() as conn:
            cur = conn.execute("SELECT * FROM predictions WHERE id = ?", (prediction_id,))
            values = cur.fetchone()
            if values is None:
                return None
            row = self._row(cur, values)
            row["verdicts"] = self._verdicts(conn, prediction_id)
        row["reviewed"] = bool(row["verdicts"])
        return row

    def verdicts(self, prediction_id: int) -> dict[str, dict[str, str]]:
        """finding -> {verdict, reviewer, note, updated_at} for one prediction."""
        with self._connect() as conn:
            return self._verdicts(conn, prediction_id)

    @staticmethod
    def _verdicts(conn: sqlite3.Connection, prediction_id: int) -> dict[str, dict[str, str]]:
        rows = conn.execute("SELECT finding, verdict, reviewer, note, updated_at FROM verdicts "
                            "WHERE prediction_id = ? ORDER BY finding", (prediction_id,))
        return {f: {"verdict": v, "reviewer": r, "note": n, "updated_at": u} for f, v, r, n, u in rows}

    def list_predictions(self, *, since: datetime | str | None = None, until: datetime | str | None = None,
                         finding: str | None = None, min_prob: float | None = None,
                         discordant: bool | None = None, reviewed: bool | None = None,
                         search: str | None = None, source: str | None = None,
                         out_of_distribution: bool | None = None, order: str = "newest",
                         with_images: bool = False, with_verdicts: bool = False,
                         limit: int | None = 500) -> list[dict[str, Any]]:
        """Newest first (``order="discordance"``: highest discordance score first); ``since``
        inclusive, ``until`` exclusive. ``with_verdicts`` adds each row's ``verdicts``. ``finding`` alone keeps predictions
        positive at that finding's stored threshold; with ``min_prob`` it keeps fusion probability
        >= min_prob (of any finding when ``finding`` is None). ``search`` is full-text over the text
        and the note; every word must match."""
        where, params = [], []
        if since is not None:
            where.append("p.created_at >= ?")
            params.append(utc_iso(since))
        if until is not None:
            where.append("p.created_at < ?")
            params.append(utc_iso(until))
        if finding is not None and finding not in FINDINGS:
            raise ValueError(f"unknown finding {finding!r}; expected one of {', '.join(FINDINGS)}")
        if finding is not None and min_prob is None:
            stored = f"json_extract(p.thresholds, '$.{finding}'), json_extract(p.thresholds, '$.fusion.{finding}')"
            where.append(f"p.{prob_column(finding)} >= COALESCE({stored}, 0.5)")
        elif min_prob is not None:
            cols = [prob_column(finding)] if finding else [prob_column(f) for f in FINDINGS]
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
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
        query = fts_query(search or "")
        if query:
            where.append("p.id IN (SELECT rowid FROM predictions_fts WHERE predictions_fts MATCH ?)")
            params.append(query)
        tail = f" WHERE {' AND '.join(where)}" if where else ""
        tail += f" ORDER BY {ORDERS[order]}"
        if limit is not None:
            tail += " LIMIT ?"
            params.append(int(limit))
        with self._connect() as conn:
            names = [n for (n,) in conn.execute("SELECT name FROM pragma_table_info('predictions')")
                     if with_images or n != "image_png"]
            cur = conn.execute(f"SELECT {', '.join('p.' + n for n in names)}, {_REVIEWED} AS reviewed "
                               f"FROM predictions p{tail}", params)
            rows = [self._row(cur, values) for values in cur.fetchall()]
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

    def search(self, query: str, *, limit: int | None = 100) -> list[dict[str, Any]]:
        """Full-text search over the text and the note; any user input is safe (see ``fts_query``)."""
        return self.list_predictions(search=query, limit=limit)

    def frame(self, **filters: Any):
        """``list_predictions`` as a pandas DataFrame, one flat column per head and finding."""
        import pandas as pd  # only the pages need it

        return pd.DataFrame([flatten(r) for r in self.list_predictions(**filters)], columns=CSV_COLUMNS)

    def count(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]

    def integrity_ok(self) -> bool:
        """SQLite's integrity check, the foreign keys and the full-text index all agree."""
        with self._connect() as conn:
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

    def export_csv(self, rows: list[dict[str, Any]]) -> str:
        return export_csv(rows)


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


CSV_COLUMNS: list[str] = (
    ["id", "created_at", "model_version", "source", "image_name", "original_name", "image_sha256", "text_sha256",
     "text_mode", "text", "note"]
    + [f"{head}_{f.lower()}" for head in HEADS for f in FINDINGS]
    + [f"threshold_{f.lower()}" for f in FINDINGS]
    + ["discordant", "n_discordant", "discordance_score", "out_of_distribution", "ood_score"]
    + [f"{k}_{f.lower()}" for f in FINDINGS for k in ("reliable_from_image", "evidence_auc", "evidence_ci",
                                                      "evidence_positives")]
    + ["reviewed"] + [f"verdict_{f.lower()}" for f in FINDINGS] + ["reviewer", "reviewed_at"]
)
_HEAD_KEYS = {"fusion": "fusion", "image": "image", "text": "text_probs"}


def flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """A prediction row as flat values (no image bytes), the shape of the CSV export."""
    flat = {k: row.get(k) for k in CSV_COLUMNS if k in row and not isinstance(row.get(k), (dict, list))}
    for head, key in _HEAD_KEYS.items():
        for finding in FINDINGS:
            flat[f"{head}_{finding.lower()}"] = (row.get(key) or {}).get(finding)
    thresholds = row.get("thresholds") or {}
    thresholds = thresholds.get("fusion", thresholds)  # per-head thresholds: the fused head's
    for finding in FINDINGS:
        flat[f"threshold_{finding.lower()}"] = thresholds.get(finding)
    flat["discordant"] = ";".join(row.get("discordant") or [])
    evidence, reliable = row.get("evidence") or {}, row.get("image_reliable") or {}
    for finding in FINDINGS:
        e, low = evidence.get(finding) or {}, finding.lower()
        flat[f"reliable_from_image_{low}"] = reliable.get(finding) if reliable else None
        flat[f"evidence_auc_{low}"] = e.get("auc")
        flat[f"evidence_ci_{low}"] = "–".join(f"{c:.3f}" for c in e["ci"]) if e.get("ci") else None
        flat[f"evidence_positives_{low}"] = e.get("positives") if e else None
    verdicts = row.get("verdicts") or {}
    for finding in FINDINGS:
        flat[f"verdict_{finding.lower()}"] = (verdicts.get(finding) or {}).get("verdict")
    flat["reviewer"] = ";".join(sorted({v["reviewer"] for v in verdicts.values() if v.get("reviewer")}))
    flat["reviewed_at"] = max((v["updated_at"] for v in verdicts.values()), default=None)
    return flat


def export_csv(rows: list[Mapping[str, Any]]) -> str:
    """Rows from ``list_predictions`` as CSV text (free text kept verbatim, quoted as needed)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in flatten(row).items()})
    return buf.getvalue()
