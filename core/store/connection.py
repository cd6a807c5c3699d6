"""The log's file: one short-lived SQLite connection per operation, and SQLite's failures as ``StoreError``s.

Every call opens its own connection, so no connection crosses Streamlit's session threads;
writes run in ``BEGIN IMMEDIATE`` transactions under a 10 s busy timeout, so concurrent
writers queue instead of failing, and a failed write leaves nothing behind."""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import StoreError, StoreFullError, StoreReadOnlyError
from core.store.schema import migrate

REPO = Path(__file__).resolve().parents[2]
BUSY_TIMEOUT_S = 10.0


def default_path() -> Path:
    env = os.environ.get("CXR_DB_PATH")
    return Path(env).expanduser() if env else REPO / "var" / "predictions.db"


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


class LogFile:
    """The file, opened and migrated once; ``connect`` gives one connection per operation. The store's
    parts share it, and nothing else: each takes the connection it is handed."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder for {self.path}: {exc.strerror}") from exc
        with self.connect() as conn:
            migrate(conn)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, the driver adds none
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)

    @contextmanager
    def connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
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

    def checkpoint(self) -> None:
        """Copy the WAL into the file and truncate it, so deleted bytes leave the WAL too."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            with self.connect() as conn:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            if time.monotonic() > deadline:
                raise StoreError(f"deleted, but readers kept {self.path}-wal busy; "
                                 "the bytes leave it at the next delete or checkpoint")
            time.sleep(0.05)
