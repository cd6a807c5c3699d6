"""The prediction log (core/store.py) on real SQLite files in tmp_path."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from core.data.labels import FINDINGS
from core.errors import LogEntryError, OptionError
from core.store import (
    AUDIT_COLUMNS,
    LogEntry,
    PredictionNotFound,
    PredictionStore,
    StoreError,
    StoreFullError,
    StoreReadOnlyError,
    export_audit_csv,
    export_csv,
    flatten,
    fts_query,
    hashed_name,
    prob_column,
)

REPO = Path(__file__).resolve().parents[2]


def make_png(width: int = 8, height: int = 8, *, comment: bytes = b"") -> bytes:
    """A valid greyscale PNG; ``comment`` goes into a tEXt chunk, a marker we can grep for."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(width) for _ in range(height))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    out += chunk(b"IDAT", zlib.compress(rows))
    if comment:
        out += chunk(b"tEXt", b"Comment\x00" + comment)
    return out + chunk(b"IEND", b"")


def probs(value: float = 0.2, **overrides: float) -> dict[str, float]:
    return {f: overrides.get(f, value) for f in FINDINGS}


def log(store: PredictionStore, **overrides) -> int:
    kwargs = dict(model_version="test-1", image_png=make_png(), image_name="cxr.png", image_sha256="a" * 64,
                  text="No acute cardiopulmonary abnormality.", text_mode="report", fusion=probs(),
                  image=probs(0.3), text_probs=probs(0.1), thresholds=probs(0.5), discordant=[],
                  out_of_distribution=False, ood_score=0.05, source="predict")
    kwargs.update(overrides)
    return store.log_prediction(LogEntry(**kwargs))


def file_bytes(path: Path) -> bytes:
    """The database and its WAL, as they sit on disk."""
    return b"".join(Path(f"{path}{s}").read_bytes() for s in ("", "-wal") if Path(f"{path}{s}").exists())


# -- schema ---------------------------------------------------------------------------------

NAMES = ["m001_initial", "m002_trust_and_names", "m003_findings", "m004_calibrated", "m005_decisions", "m006_audit"]


def recorded(path: Path) -> list[tuple[str, str]]:
    """(name, applied_at) of each migration the file's record names, oldest first (sqlite-utils' table)."""
    from core.store import schema
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT name, applied_at FROM _sqlite_migrations WHERE migration_set = ? ORDER BY id",
                            (schema.MIGRATION_SET,)).fetchall()


def legacy_file(path: Path, version: int) -> None:
    """A log as the hand-written runner (before issue 27) left it at schema ``version``: the first
    migrations, each recorded in its own ``migrations`` table (version, name, applied_at)."""
    import sqlite_utils

    from core.store import schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    for version_, migration in enumerate(schema.MIGRATIONS[:version], 1):
        migration(sqlite_utils.Database(conn))
        conn.execute("INSERT INTO migrations VALUES (?, ?, ?)",
                     (version_, migration.__name__.lstrip("_"), f"2024-0{version_}-01T00:00:00.000000+00:00"))
    conn.execute("COMMIT")
    conn.close()


def test_migrations_on_fresh_file_and_reopen(tmp_path):
    path = tmp_path / "sub" / "log.db"  # parent folder is created
    PredictionStore(path)
    PredictionStore(path)  # idempotent
    assert [name for name, _ in recorded(path)] == NAMES
    conn = sqlite3.connect(path)
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"predictions", "verdicts", "predictions_fts", "audit", "findings", "_sqlite_migrations"} <= tables
    assert "migrations" not in tables  # the hand-written runner's record: only in files from before issue 27
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = {n for (n,) in conn.execute("SELECT name FROM pragma_table_info('predictions')")}
    assert {prob_column(f) for f in FINDINGS} <= columns


def test_a_new_file_has_the_columns_of_a_file_from_before(tmp_path):
    """The runner changed, the schema did not: a new file's tables and columns are those the
    hand-written runner left, so rows read back the same."""
    legacy_file(tmp_path / "old.db", 6)
    PredictionStore(tmp_path / "new.db")

    def shape(path):
        with sqlite3.connect(path) as conn:
            tables = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name "
                                                 "NOT IN ('migrations', '_sqlite_migrations') ORDER BY name")]
            return {t: conn.execute(f"SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('{t}')")
                    .fetchall() for t in tables}
    assert shape(tmp_path / "new.db") == shape(tmp_path / "old.db")


def test_newer_schema_is_refused(fresh_db):
    from core.store import schema
    conn = sqlite3.connect(fresh_db.path)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, 'm099_future', "
                 "'2100-01-01')", (schema.MIGRATION_SET,))
    conn.commit()
    with pytest.raises(StoreError, match=r"newer version \(schema 7\)"):
        PredictionStore(fresh_db.path)


def test_a_file_from_before_issue_27_keeps_its_record_until_it_needs_a_migration(tmp_path):
    """A log the hand-written runner brought to schema 6 opens without a write (read-only too) and reads
    its record as it is; one it left at an older schema is migrated, its record carried into sqlite-utils'
    table (same names, same times) and the old table dropped, in the migration's transaction."""
    up_to_date, older, newer = tmp_path / "v6.db", tmp_path / "v4.db", tmp_path / "future.db"
    legacy_file(up_to_date, 6)
    before = file_bytes(up_to_date)
    assert PredictionStore(up_to_date).count() == 0 and file_bytes(up_to_date) == before
    legacy_file(older, 4)
    PredictionStore(older)
    assert [n for n, _ in recorded(older)] == NAMES
    assert recorded(older)[:4] == [(n, f"2024-0{i}-01T00:00:00.000000+00:00") for i, n in enumerate(NAMES[:4], 1)]
    with sqlite3.connect(older) as conn:
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'migrations'").fetchone() is None
    legacy_file(newer, 6)
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO migrations VALUES (7, 'm007_future', '2100-01-01')")
    with pytest.raises(StoreError, match="newer version"):
        PredictionStore(newer)


def test_default_path_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_DB_PATH", str(tmp_path / "env" / "p.db"))
    assert PredictionStore().path == tmp_path / "env" / "p.db"
    assert (tmp_path / "env" / "p.db").is_file()


# -- writing and reading --------------------------------------------------------------------

def test_round_trip_and_validation(fresh_db):
    pid = log(fresh_db, image_name="C:\\Users\\Doe^John\\scans/pt 123.png", discordant=["Edema"],
              fusion=probs(0.2, Edema=0.9), out_of_distribution=True)
    row = fresh_db.get(pid)
    assert row["image_name"] == "pt 123.png"  # basename only
    assert row["fusion"]["Edema"] == 0.9 and row["discordant"] == ["Edema"] and row["n_discordant"] == 1
    assert row["out_of_distribution"] is True and row["reviewed"] is False and row["verdicts"] == {}
    assert row["image_png"] == make_png() and len(row["text_sha256"]) == 64
    assert fresh_db.get(pid + 1) is None
    for bad in (dict(text_mode="findings"), dict(source="web"), dict(image_png=make_png(512, 200)),
                dict(image_png=b"GIF89a..."), dict(fusion={"Effusion": 0.3}), dict(fusion=probs(1.5)),
                dict(discordant=["Nodule"]), dict(image_sha256="xyz"), dict(thresholds={"ensemble": probs()})):
        with pytest.raises(ValueError):
            log(fresh_db, **bad)
    assert fresh_db.count() == 1


def test_hostile_text_is_stored_verbatim(fresh_db):
    text = ("<script>alert('x')</script><img src=x onerror=alert(1)> \"; DROP TABLE predictions; -- "
            "' OR '1'='1 /* */ \\x00 %s {0} ${{x}} \r\n\ttabs é中文 🫁 \u202eRTL")
    pid = log(fresh_db, text=text, image_name="<b>x</b>.png")
    fresh_db.set_note(pid, text)
    row = fresh_db.get(pid)
    assert row["text"] == text and row["note"] == text and row["image_name"] == "b>.png"  # basename
    assert fresh_db.count() == 1 and fresh_db.integrity_ok()


def test_verdicts_and_notes(fresh_db):
    pid = log(fresh_db)
    fresh_db.set_verdict(pid, "Edema", "absent", reviewer="rad1", note="vascular markings normal")
    fresh_db.set_verdict(pid, "Edema", "present", reviewer="rad2")  # upsert, one row per finding
    fresh_db.set_verdict(pid, "Cardiomegaly", "uncertain")
    verdicts = fresh_db.verdicts(pid)
    assert verdicts["Edema"]["verdict"] == "present" and verdicts["Edema"]["reviewer"] == "rad2"
    assert set(verdicts) == {"Edema", "Cardiomegaly"} and fresh_db.get(pid)["reviewed"] is True
    fresh_db.set_verdict(pid, "Cardiomegaly", None)
    assert set(fresh_db.verdicts(pid)) == {"Edema"}
    with pytest.raises(ValueError):
        fresh_db.set_verdict(pid, "Edema", "agree")
    with pytest.raises(ValueError):
        fresh_db.set_verdict(pid, "Nodule", "present")
    with pytest.raises(PredictionNotFound):
        fresh_db.set_verdict(pid + 7, "Edema", "present")
    with pytest.raises(PredictionNotFound):
        fresh_db.set_note(pid + 7, "x")


# -- concurrency ----------------------------------------------------------------------------

def test_many_threads_write_without_loss_or_lock_errors(fresh_db):
    n_threads, per_thread = 8, 25
    errors, ids = [], []
    start = threading.Barrier(n_threads + 1)

    def writer(t: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                ids.append(log(fresh_db, text=f"thread {t} write {i}"))
                if i % 5 == 0:
                    fresh_db.list_predictions(limit=5)  # readers interleave with writers
        except Exception as exc:  # noqa: BLE001 - any failure fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    start.wait()
    for th in threads:
        th.join(timeout=60)
    assert errors == []
    assert fresh_db.count() == n_threads * per_thread == len(set(ids))
    texts = {r["text"] for r in fresh_db.list_predictions(limit=None)}
    assert texts == {f"thread {t} write {i}" for t in range(n_threads) for i in range(per_thread)}
    assert fresh_db.integrity_ok()


# -- search and filters ---------------------------------------------------------------------

def test_full_text_search(fresh_db):
    a = log(fresh_db, text="Mild pulmonary edema with bilateral effusions.")
    b = log(fresh_db, text="Heart size is enlarged. No focal consolidation.")
    fresh_db.set_note(b, "discuss at conference")

    def ids(query):
        return {r["id"] for r in fresh_db.list_predictions(search=query)}

    assert ids("edema") == {a}
    assert ids("effusion") == {a}  # porter stemming
    assert ids("CONFERENCE") == {b}  # notes are searched too
    assert ids("heart enlarged") == {b} and ids("heart edema") == set()  # words are ANDed
    assert ids("") == ids("   ") == {a, b}
    hostile = ['"', '""', 'edema"', '"edema', "NEAR(heart size)", "heart OR", "NOT", "*", "edema*", "^heart",
               "text:edema", "(heart", "heart)", "'; DROP TABLE predictions; --", "a AND", "{text}: x", "+", "-",
               "\\", "%", "ед", "🫁"]
    for query in hostile:
        fresh_db.list_predictions(search=query)  # never an FTS syntax error
    assert ids('"edema"') == {a} and ids("text:edema") == set()
    assert [r["id"] for r in fresh_db.search("NEAR(edema")] == [] and fresh_db.search("edema")[0]["id"] == a
    assert fts_query('a "b" NOT') == '"a" """b""" "NOT"'
    assert fresh_db.count() == 2


def test_filters(fresh_db):
    old = log(fresh_db, created_at="2024-01-01T10:00:00Z", fusion=probs(0.1, Edema=0.7),
              thresholds=probs(0.5, Edema=0.8))  # Edema 0.7 is under its own threshold
    mid = log(fresh_db, created_at="2024-06-01T10:00:00+02:00", fusion=probs(0.1, Edema=0.9),
              discordant=["Edema"], source="batch")
    new = log(fresh_db, created_at="2025-01-01", fusion=probs(0.1, Cardiomegaly=0.6), text="cardiac silhouette",
              thresholds={"fusion": probs(0.5), "image": probs(0.4), "text": probs(0.6)})  # per-head form
    fresh_db.set_verdict(mid, "Edema", "present")

    def ids(**kw):
        return [r["id"] for r in fresh_db.list_predictions(**kw)]

    assert ids() == [new, mid, old]  # newest first
    assert ids(since="2024-03-01") == [new, mid] and ids(until="2024-06-01T08:00:00Z") == [old]
    assert ids(since="2024-06-01T08:00:00+00:00") == [new, mid]  # time zones normalised
    assert ids(finding="Edema") == [mid]  # positive at the stored threshold
    assert ids(finding="Cardiomegaly") == [new]  # ... the fused head's, when every head's is stored
    assert fresh_db.get(new)["thresholds"]["image"]["Edema"] == 0.4
    assert ids(finding="Edema", min_prob=0.65) == [mid, old]
    assert ids(min_prob=0.55) == [new, mid, old] and ids(min_prob=0.95) == []
    assert ids(discordant=True) == [mid] and ids(discordant=False) == [new, old]
    assert ids(reviewed=True) == [mid] and ids(reviewed=False) == [new, old]
    assert ids(source="batch") == [mid] and ids(search="silhouette") == [new]
    assert ids(limit=1) == [new] and ids(finding="Edema", reviewed=False, min_prob=0.5) == [old]
    assert "image_png" not in fresh_db.list_predictions()[0]
    assert fresh_db.list_predictions(with_images=True)[0]["image_png"] == make_png()
    with pytest.raises(ValueError):
        fresh_db.list_predictions(finding="Nodule")
    frame = fresh_db.frame(discordant=True)
    assert list(frame["id"]) == [mid] and frame.loc[0, "fusion_edema"] == 0.9


def test_csv_export_round_trip(fresh_db):
    text = 'Line one, with comma\nline "two"\r\n=SUM(A1) -leading dash'
    pid = log(fresh_db, text=text, discordant=["Edema", "Atelectasis"], fusion=probs(0.123456789012345),
              text_probs={"Edema": 0.4}, ood_score=None)
    log(fresh_db, text_mode="none", text="", text_probs=None, thresholds={"fusion": probs(0.7)})
    rows = list(csv.DictReader(io.StringIO(fresh_db.export_csv(fresh_db.list_predictions()))))
    assert len(rows) == 2
    row = next(r for r in rows if int(r["id"]) == pid)
    assert row["text"] == text and row["discordant"].split(";") == ["Edema", "Atelectasis"]
    assert float(row["fusion_edema"]) == 0.123456789012345 and float(row["text_edema"]) == 0.4
    assert row["text_pneumonia"] == "" and row["ood_score"] == "" and row["reviewed"] == "False"
    assert "image_png" not in row and float(row["threshold_cardiomegaly"]) == 0.5
    assert next(r for r in rows if int(r["id"]) != pid)["threshold_edema"] == "0.7"
    assert export_csv([]).count("\n") == 1  # header only


# -- privacy --------------------------------------------------------------------------------

def test_delete_removes_rows_verdicts_and_bytes(fresh_db):
    keep = [log(fresh_db, text=f"ordinary report {i} heart normal") for i in range(20)]
    marker = "zqxprivatemarker"
    # long enough to spill into overflow pages, which SQLite frees (and must zero) separately
    pid = log(fresh_db, text=f"Patient text {marker} heart normal " + f"{marker} " * 1500,
              image_png=make_png(256, 256, comment=b"PNGMARKER77" * 1000), image_name=f"{marker}.png")
    fresh_db.set_note(pid, f"note {marker}")
    fresh_db.set_verdict(pid, "Edema", "absent", note=f"verdict {marker}")
    raw = file_bytes(fresh_db.path)
    assert marker.encode() in raw and b"PNGMARKER77" in raw  # the check below can see them

    assert fresh_db.delete(pid) is True
    assert fresh_db.delete(pid) is False
    raw = file_bytes(fresh_db.path)
    assert marker.encode() not in raw and b"PNGMARKER77" not in raw
    assert fresh_db.get(pid) is None and fresh_db.verdicts(pid) == {}
    assert sqlite3.connect(fresh_db.path).execute("SELECT count(*) FROM verdicts").fetchone()[0] == 0
    assert fresh_db.list_predictions(search=marker) == []
    assert [r["id"] for r in fresh_db.list_predictions(search="heart normal")] == keep[::-1]
    assert fresh_db.count() == 20 and fresh_db.integrity_ok()


# -- failures -------------------------------------------------------------------------------

def test_read_only_database_gives_store_error_and_changes_nothing(fresh_db, monkeypatch):
    pid = log(fresh_db, text="before")
    before = fresh_db.list_predictions()
    fresh_db.path.chmod(0o444)
    if os.geteuid() == 0:  # root ignores permission bits: open it the way SQLite opens such a file
        uri = f"file:{fresh_db.path}?mode=ro"
        monkeypatch.setattr(fresh_db.file, "_open", lambda: sqlite3.connect(uri, uri=True, isolation_level=None))
    try:
        for write in (lambda: log(fresh_db, text="after"), lambda: fresh_db.set_note(pid, "x"),
                      lambda: fresh_db.set_verdict(pid, "Edema", "present"), lambda: fresh_db.delete(pid)):
            with pytest.raises(StoreReadOnlyError) as info:
                write()
            assert "read-only" in str(info.value) and "\n" not in str(info.value)
    finally:
        fresh_db.path.chmod(0o644)
    monkeypatch.undo()
    assert fresh_db.list_predictions() == before and fresh_db.verdicts(pid) == {}
    assert fresh_db.integrity_ok()


def test_full_disk_gives_store_error_and_no_half_row(fresh_db, monkeypatch):
    first = log(fresh_db, text="fits")
    real_open = fresh_db.file._open

    def full_open():  # the file may not grow by a single page: what a full disk looks like to SQLite
        conn = real_open()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(fresh_db.file, "_open", full_open)
    with pytest.raises(StoreFullError, match="full"):
        log(fresh_db, text="x" * 200_000, image_png=make_png(256, 256))
    monkeypatch.undo()
    assert fresh_db.count() == 1 and fresh_db.get(first)["text"] == "fits"
    assert fresh_db.list_predictions(search="x" * 20) == [] and fresh_db.integrity_ok()


WRITER = """
import sys, struct, zlib
sys.path.insert(0, {repo!r})
from core.store import LogEntry, PredictionStore
from core.data.labels import FINDINGS
store = PredictionStore({db!r})
i = 0
while True:
    p = (i % 100) / 100
    store.log_prediction(LogEntry(model_version="kill", image_png=None, image_name=f"{{i}}.png", image_sha256=None,
                                  text=f"row {{i}} " + "lorem ipsum " * 500, text_mode="report",
                                  fusion={{f: p for f in FINDINGS}}, image={{f: p for f in FINDINGS}},
                                  text_probs={{f: p for f in FINDINGS}}, thresholds={{f: 0.5 for f in FINDINGS}},
                                  discordant=list(FINDINGS[: i % 6]), out_of_distribution=False, ood_score=p,
                                  source="cli"))
    i += 1
"""


def test_sigkill_mid_stream_leaves_only_whole_rows(fresh_db):
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(repo=str(REPO), db=str(fresh_db.path))],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while fresh_db.count() < 40:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = PredictionStore(fresh_db.path)  # reopens (and recovers the WAL) cleanly
    assert store.integrity_ok()
    rows = store.list_predictions(limit=None)
    assert len(rows) == store.count() >= 40
    conn = sqlite3.connect(store.path)
    flat = dict(conn.execute(f"SELECT id, {prob_column('Edema')} FROM predictions"))
    for row in rows:
        i = int(row["image_name"].removesuffix(".png"))
        assert row["text"] == f"row {i} " + "lorem ipsum " * 500
        assert row["fusion"] == {f: (i % 100) / 100 for f in FINDINGS} == row["text_probs"]
        assert flat[row["id"]] == row["fusion"]["Edema"] and row["ood_score"] == (i % 100) / 100
        assert row["n_discordant"] == len(row["discordant"]) == i % 6
    assert sorted(int(r["image_name"][:-4]) for r in rows) == list(range(len(rows)))  # no gaps
    log(store)  # and it takes new writes
    assert json.loads(conn.execute("SELECT fusion FROM predictions ORDER BY id DESC").fetchone()[0])


# -- issue 10: names, verdicts in the export, prefix search, discordance order -----------------

# what issue 26's migration adds
SCHEMA_5 = ("decision", "operating_point_name", "operating_point", "not_assessed", "n_flagged")
SCHEMA_6 = ("note_by", "note_at")  # columns LogEntry.row does not write: their defaults


def old_file_with_a_row(path: Path, migrations: int, absent: tuple[str, ...]) -> int:
    """A log the hand-written runner left at schema ``migrations`` (``legacy_file``), holding one row without
    the ``absent`` columns (those later migrations add); returns the row's id."""
    legacy_file(path, migrations)
    row = LogEntry(model_version=f"v{migrations}", image_png=None, image_name="cxr.png", image_sha256=None, text="",
                   text_mode="none", fusion=probs(), image=probs(), text_probs=None, thresholds=probs()).row()
    for new in (*absent, *SCHEMA_5):
        row.pop(new)
    with sqlite3.connect(path) as conn:
        return conn.execute(f"INSERT INTO predictions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                            list(row.values())).lastrowid


def test_version_1_file_migrates_and_keeps_its_rows(tmp_path):
    """A log written before migration 2 opens, gains the columns, and its rows read as before
    (their names were the uploads' own: original_name is True)."""
    path = tmp_path / "old.db"
    old_id = old_file_with_a_row(path, 1, ("discordance_score", "evidence", "image_reliable",
                                                        "original_name", "calibrated"))
    migrated = PredictionStore(path)
    row = migrated.get(old_id)
    assert row["image_name"] == "cxr.png" and row["original_name"] is True
    assert row["discordance_score"] == 0 and row["evidence"] == {} and row["image_reliable"] == {}
    assert row["calibrated"] == {}                                   # not recorded before schema 4


def test_version_3_file_gains_the_calibrated_column(tmp_path):
    """Schema 4 (issue 20): a log written by schema 3 opens, its rows say nothing about calibration, and
    new rows record per finding whether their fused number went through the recalibration map."""
    path = tmp_path / "v3.db"
    old_id = old_file_with_a_row(path, 3, ("calibrated",))
    store = PredictionStore(path)
    assert store.get(old_id)["calibrated"] == {}
    new_id = log(store, calibrated={"Edema": False, "Cardiomegaly": True, "Unknown": True})
    assert store.get(new_id)["calibrated"] == {"Edema": False, "Cardiomegaly": True}
    assert [n for n, _ in recorded(path)] == NAMES


def test_hashed_name_names_no_one():
    data = b"pixels"
    name = hashed_name("C:\\PACS\\DOE_JANE_chest.DCM", data)
    assert name.startswith("upload-") and name.endswith(".dcm") and "DOE" not in name
    assert name == hashed_name("other.dcm", data) and name != hashed_name("x.dcm", b"other")
    assert hashed_name("evil.exe", data).endswith(tuple("0123456789abcdef"))  # odd suffixes are dropped


def test_export_carries_verdicts_reviewer_time_and_evidence(fresh_db):
    evidence = {f: {"auc": 0.8, "ci": [0.7, 0.9], "positives": 55, "reliable": True, "source": "test"}
                for f in FINDINGS}
    pid = log(fresh_db, evidence=evidence, image_reliable={f: f == "Cardiomegaly" for f in FINDINGS},
              calibrated={f: f in ("Cardiomegaly", "Atelectasis") for f in FINDINGS},
              discordance_score=1.5, image_name="upload-abc.png", original_name=False)
    other = log(fresh_db)
    fresh_db.set_verdict(pid, "Cardiomegaly", "present", reviewer="jd")
    fresh_db.set_verdict(pid, "Edema", "absent", reviewer="jd")
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(
        fresh_db.export_csv(fresh_db.list_predictions(limit=None, with_verdicts=True))))}
    r = rows[pid]
    assert (r["verdict_cardiomegaly"], r["verdict_edema"], r["verdict_pneumonia"]) == ("present", "absent", "")
    assert r["reviewer"] == "jd" and r["reviewed_at"].startswith("20") and r["reviewed"] == "True"
    assert r["model_version"] == "test-1" and r["fusion_edema"] and r["discordance_score"] == "1.5"
    assert r["evidence_auc_edema"] == "0.8" and r["evidence_ci_edema"] == "0.700–0.900"
    assert r["evidence_positives_edema"] == "55"
    assert (r["reliable_from_image_cardiomegaly"], r["reliable_from_image_edema"]) == ("True", "False")
    assert (r["image_name"], r["image_name_kind"]) == ("upload-abc.png", "hashed (upload-<hash>)")
    assert r["evidence_for"] == "report mode, fused head; test"  # the mode, head and source of the evidence
    assert (r["calibrated_cardiomegaly"], r["calibrated_edema"]) == ("True", "False")   # the number's status
    assert rows[other]["calibrated_edema"] == ""                                         # not recorded
    assert rows[other]["verdict_cardiomegaly"] == "" and rows[other]["reviewer"] == ""


def test_prefix_search_and_discordance_order(fresh_db):
    a = log(fresh_db, text="Right lower lobe pneumonia.", discordance_score=0.2)
    b = log(fresh_db, text="Pneumonitis, no effusion.", discordance_score=2.0)
    c = log(fresh_db, text="Heart size normal.")

    def ids(**kw):
        return [r["id"] for r in fresh_db.list_predictions(**kw)]

    assert ids(search="pneumon") == [b]  # a plain word matches word forms (porter: pneumonitis), not pneumonia
    assert set(ids(search="pneumon*")) == {a, b}
    assert ids(search="pneumon* effusion") == [b]
    assert ids(order="discordance") == [b, a, c] and ids() == [c, b, a]
    with pytest.raises(ValueError, match="order"):
        fresh_db.list_predictions(order="worst")


def test_log_many_is_one_transaction(fresh_db):
    good = dict(model_version="m", image_png=make_png(), image_name="a.png", image_sha256=None, text="",
                text_mode="none", fusion=probs(), image=probs(), text_probs=None, thresholds=probs())
    with pytest.raises(LogEntryError, match="text_mode 'bogus'"):  # checked where the entry is made
        LogEntry(**{**good, "text_mode": "bogus"})
    # two models whose new findings would share a column: the second entry fails in the file, the first goes too
    six = {**good, "fusion": {**probs(), "Pleural Effusion": 0.1}, "findings": [*FINDINGS, "Pleural Effusion"]}
    clash = {**good, "fusion": {**probs(), "pleural-effusion": 0.1}, "findings": [*FINDINGS, "pleural-effusion"]}
    with pytest.raises(StoreError, match="share the column"):
        fresh_db.log_many([LogEntry(**six), LogEntry(**clash)])
    assert fresh_db.count() == 0 and fresh_db.findings() == list(FINDINGS)
    assert len(fresh_db.log_many([LogEntry(**good)] * 2)) == 2 and fresh_db.count() == 2


def test_an_entry_is_one_frozen_value(fresh_db):
    """One value from the prediction to the file: frozen, keyword-only, the same row wherever it is written."""
    import dataclasses
    entry = LogEntry(model_version="m", image_png=None, image_name="C:\\scans\\a.png", image_sha256=None,
                     text="Cough.", text_mode="indication", fusion=probs(), image=probs(), text_probs=probs(),
                     thresholds=probs(), created_at="2024-01-01")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.text = "other"
    with pytest.raises(TypeError):
        LogEntry("m", None, "a.png", None, "", "none", probs(), probs(), None, probs())  # keyword-only
    row = entry.row()
    assert row["image_name"] == "a.png" and row["text_sha256"] and row["created_at"].startswith("2024-01-01T00:00")
    assert {k: v for k, v in fresh_db.get(fresh_db.log_prediction(entry)).items()
            if k in ("image_name", "text", "text_sha256", "created_at")} == {
        k: row[k] for k in ("image_name", "text", "text_sha256", "created_at")}
    with pytest.raises(LogEntryError, match="source"):
        dataclasses.replace(entry, source="web")  # a changed copy is checked again


def test_a_file_the_runner_left_at_an_older_schema_migrates(tmp_path, monkeypatch):
    from core.store import schema
    path = tmp_path / "v3.db"
    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
        PredictionStore(path)
    assert [n for n, _ in recorded(path)] == NAMES[:3]
    assert PredictionStore(path).audit_log() == [] and [n for n, _ in recorded(path)] == NAMES


def test_export_leaves_the_discordance_score_empty_outside_report_mode(fresh_db):
    """Report QA exists in report mode only: an indication or image-only row has no score (it
    used to read 0.0, as if the image and a report had been compared)."""
    pid = log(fresh_db, text="Cough.", text_mode="indication", discordance_score=0.0)
    none = log(fresh_db, text="", text_mode="none", text_probs=None, evidence={
        f: {"auc": 0.8, "ci": [0.7, 0.9], "positives": 55} for f in FINDINGS})
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(fresh_db.export_csv(fresh_db.list_predictions())))}
    assert rows[pid]["discordance_score"] == "" and rows[none]["discordance_score"] == ""
    assert rows[none]["evidence_for"] == "none mode, image head" and rows[pid]["evidence_for"] == ""


def test_version_4_file_gains_the_decision_columns(tmp_path):
    """Schema 5 (issue 26): a log written by schema 4 opens, its rows record no decision (the history
    decides them with the loaded weights and says so), new rows keep the decision they were shown, the
    operating point's name and what it means; a finding filter keeps the rows flagged for it."""
    path = tmp_path / "v4.db"
    old_id = old_file_with_a_row(path, 4, ())
    store = PredictionStore(path)
    old = store.get(old_id)
    assert old["decision"] == {} and old["operating_point_name"] == "" and old["operating_point"] == {}
    op = {"name": "specificity 0.90", "threshold": 0.2, "sensitivity": 0.57, "specificity": 0.9}
    new_id = log(store, fusion=probs(0.1), decision={"Cardiomegaly": "flagged", "Edema": "not flagged",
                                                      "Pneumonia": "not assessed"},
                 operating_point_name="specificity 0.90", operating_point={"Cardiomegaly": op},
                 not_assessed={"Pneumonia": "not supported from the image in this mode"})
    row = store.get(new_id)
    assert row["decision"]["Cardiomegaly"] == "flagged" and row["operating_point"]["Cardiomegaly"] == op
    assert row["operating_point_name"] == "specificity 0.90" and row["n_flagged"] == 1
    assert row["not_assessed"] == {"Pneumonia": "not supported from the image in this mode"}
    # the new row: flagged by its decision, though its probability (0.1) is under its stored threshold (0.5);
    # the old row (no decision recorded): by its stored threshold (0.2 >= 0.2)
    assert [r["id"] for r in store.list_predictions(finding="Cardiomegaly")] == [new_id, old_id]
    assert [r["id"] for r in store.list_predictions(finding="Edema")] == [old_id]
    flat = flatten(store.get(new_id))
    assert flat["decision_cardiomegaly"] == "flagged" and flat["sensitivity_cardiomegaly"] == 0.57
    assert flat["operating_point_name"] == "specificity 0.90" and flat["decision_pneumonia"] == "not assessed"
    with pytest.raises(LogEntryError, match="decision 'maybe'"):
        log(store, decision={"Edema": "maybe"})
    assert [n for n, _ in recorded(path)] == NAMES


# -- who did what (schema 6, issue 29) --------------------------------------------------------

def test_changes_record_who_and_when_and_deletions_keep_their_audit(fresh_db):
    pid, other = log(fresh_db), log(fresh_db)
    assert fresh_db.set_verdict(pid, "Edema", "absent", reviewer="alice@site.org") is True
    assert fresh_db.set_verdict(pid, "Edema", "absent", reviewer="bob@site.org") is False   # unchanged: kept
    assert fresh_db.verdicts(pid)["Edema"]["reviewer"] == "alice@site.org"
    assert fresh_db.set_verdict(pid, "Edema", "present", reviewer="bob@site.org") is True
    assert fresh_db.set_verdict(pid, "Edema", None, reviewer="local") is True
    assert fresh_db.set_note(pid, "discuss at conference", by="alice@site.org") is True
    assert fresh_db.set_note(pid, "discuss at conference", by="bob@site.org") is False
    row = fresh_db.get(pid)
    assert row["note_by"] == "alice@site.org" and row["note_at"].startswith("20")
    steps = [(a["action"], a["finding"], a["by_user"], a["detail"]) for a in fresh_db.activity(pid)]
    assert steps == [("verdict", "Edema", "alice@site.org", "none → absent"),
                     ("verdict", "Edema", "bob@site.org", "absent → present"),
                     ("verdict", "Edema", "local", "present → none (cleared)"),
                     ("note", "", "alice@site.org", "note set (21 characters)")]  # never the note's text
    times = [a["at"] for a in fresh_db.activity(pid)]
    assert times == sorted(times) and all(t.startswith("20") for t in times)
    assert fresh_db.delete(pid, by="alice@site.org") is True
    gone = fresh_db.deletions()
    assert [(d["prediction_id"], d["by_user"], d["action"]) for d in gone] == [(pid, "alice@site.org", "delete")]
    assert "model test-1" in gone[0]["detail"] and "cxr.png" not in gone[0]["detail"]
    assert [a["action"] for a in fresh_db.activity(pid)] == ["verdict"] * 3 + ["note", "delete"]  # kept
    assert fresh_db.activity(other) == [] and fresh_db.integrity_ok()
    with pytest.raises(LogEntryError, match="user"):
        fresh_db.set_note(other, "x", by="bad\nname")
    with pytest.raises(OptionError, match="action"):
        fresh_db.audit_log(action="edit")


def test_export_carries_who_changed_the_note_and_the_audit_exports(fresh_db):
    pid = log(fresh_db)
    fresh_db.set_verdict(pid, "Cardiomegaly", "present", reviewer="alice@site.org")
    fresh_db.set_note(pid, "compare with prior", by="bob@site.org")
    r = next(csv.DictReader(io.StringIO(fresh_db.export_csv(fresh_db.list_predictions(with_verdicts=True)))))
    assert (r["reviewer"], r["note_by"]) == ("alice@site.org", "bob@site.org")
    assert r["reviewed_at"].startswith("20") and r["note_at"].startswith("20")
    fresh_db.delete(pid, by="alice@site.org")
    rows = list(csv.DictReader(io.StringIO(export_audit_csv(fresh_db.audit_log(limit=None)))))
    assert [(x["action"], x["by_user"], x["prediction_id"]) for x in rows] == [
        ("delete", "alice@site.org", str(pid)), ("note", "bob@site.org", str(pid)),
        ("verdict", "alice@site.org", str(pid))]
    assert list(rows[0]) == AUDIT_COLUMNS


@pytest.mark.parametrize("migrations, absent", [
    (1, ("discordance_score", "evidence", "image_reliable", "original_name", "calibrated")),
    (3, ("calibrated",)), (5, ())])
def test_older_files_gain_the_audit_and_keep_their_verdicts_as_history(tmp_path, migrations, absent):
    """Schema 6 on a log written by schema 1, 3 or 5: its rows and verdicts stay; each verdict recorded
    before becomes an audit row with the reviewer as it was typed; new changes are attributed."""
    from core.store import schema
    path = tmp_path / f"v{migrations}.db"
    old_id = old_file_with_a_row(path, migrations, absent)
    with sqlite3.connect(path) as conn:  # a verdict typed into the old form's free-text reviewer box
        conn.execute("INSERT INTO verdicts (prediction_id, finding, verdict, reviewer, note, updated_at) "
                     "VALUES (?, 'Edema', 'absent', 'jd', '', '2024-05-01T10:00:00.000000+00:00')", (old_id,))
    store = PredictionStore(path)
    row = store.get(old_id)
    assert row["model_version"] == f"v{migrations}" and row["verdicts"]["Edema"]["reviewer"] == "jd"
    assert (row["note_by"], row["note_at"]) == ("", None)
    [before] = store.activity(old_id)
    assert (before["action"], before["by_user"], before["at"][:10]) == ("verdict", "jd", "2024-05-01")
    assert "before schema 6" in before["detail"]
    store.set_note(old_id, "seen", by="alice@site.org")
    assert store.delete(old_id, by="alice@site.org")
    assert [a["action"] for a in store.activity(old_id)] == ["verdict", "note", "delete"]
    assert [n for n, _ in recorded(path)] == NAMES == [m.__name__.lstrip("_") for m in schema.MIGRATIONS]
    assert store.integrity_ok()
