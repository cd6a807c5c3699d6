"""The prediction log: every prediction the app or a CLI makes, in one SQLite file, for review.

    store = PredictionStore()                  # $CXR_DB_PATH, else <repo>/var/predictions.db
    entry = LogEntry(model_version=..., image_png=..., ...)   # checked here (core.serving.predict_and_log.log_entry)
    pid = store.log_prediction(entry)          # store.log_many([...]): several, all or none
    store.set_verdict(pid, "Edema", "absent", reviewer="alice@site.org")   # who, recorded with the time
    store.set_note(pid, "discuss", by="alice@site.org"); store.delete(pid, by="alice@site.org")
    store.activity(pid)                        # every change and the deletion: at, by_user, action, ...
    rows = store.list_predictions(finding="Edema", reviewed=False)

What is stored, per prediction: a downscaled review copy of the image (PNG, at most 256 px
on a side, decoded from pixels only), the SHA-256 of the uploaded image and of the text,
the uploaded file's base name, the text the model read and its mode, the three heads'
probabilities, the thresholds, the discordant findings, the out-of-distribution flag and
score, the model version, where the call came from, and the reviewer's note and per-finding
verdicts, each with who set it and when, and an audit row per change and per deletion. What
is never stored: DICOM headers or any identifier read from them (patient name, id, birth
date, accession number) — the store's API has no field for them — nor the full-resolution
image. ``delete`` removes a prediction's bytes from the file, not just its row.

Verdicts are the reviewer's ground truth per finding: ``present``, ``absent`` or
``uncertain`` (not agreement with the model, so the log can later score the model).

Every call opens its own short-lived connection, so no connection crosses Streamlit's
session threads; writes run in ``BEGIN IMMEDIATE`` transactions under a 10 s busy timeout,
so concurrent writers queue instead of failing, and a failed write leaves nothing behind.

The package, by concern: ``schema`` (tables, migrations run by sqlite-utils), ``rows`` (``LogEntry``: one
prediction, checked), ``connection`` (``LogFile``: one connection per call, SQLite errors as ``StoreError``),
``writes``, ``reads`` (filters, full-text search) and ``audit`` (who changed or deleted what, and when): functions
of one connection, which ``prediction_store.PredictionStore`` opens and hands them; ``export`` (flat rows, CSV).
Import from ``core.store``.
"""
from __future__ import annotations

from core.errors import PredictionNotFound, StoreError, StoreFullError, StoreReadOnlyError
from core.store.audit import AUDIT_COLUMNS, export_audit_csv
from core.store.connection import BUSY_TIMEOUT_S, REPO, LogFile, default_path
from core.store.export import CSV_COLUMNS, export_csv, flatten
from core.store.prediction_store import PredictionStore
from core.store.reads import ORDERS, SEARCH_HELP, fts_query
from core.store.rows import MAX_REVIEW_PX, SOURCES, VERDICTS, LogEntry, hashed_name, safe_name
from core.store.schema import AUDIT_ACTIONS, MIGRATIONS, prob_column, utc_iso

__all__ = [
    "AUDIT_ACTIONS", "AUDIT_COLUMNS", "BUSY_TIMEOUT_S", "CSV_COLUMNS", "MAX_REVIEW_PX", "MIGRATIONS", "ORDERS",
    "REPO", "SEARCH_HELP", "SOURCES", "VERDICTS", "LogEntry", "LogFile", "PredictionNotFound", "PredictionStore",
    "StoreError", "StoreFullError", "StoreReadOnlyError", "default_path", "export_audit_csv", "export_csv", "flatten",
    "fts_query", "hashed_name", "prob_column", "safe_name", "utc_iso",
]
