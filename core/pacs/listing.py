"""What the PACS page lists per study: acquisition facts and a short hash, never a patient identifier.

    rows = list_studies(pacs, since="20261101", version="2026...")   # newest first
    rows[0] == {"study": "3fa9c2d1e0b4", "date": "2026-12-01", "modality": "DX", "views": "PA, LL",
                "images": 2, "SR of this model": "no"}
    refs = refs_by_hash(...)  # the page keeps StudyRefs server-side; the browser only sees the hash
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from core.pacs.connection import Pacs, StudyRef
from core.pacs.sr import is_ours_for
from core.pacs.studies import candidates

MAX_LISTED = 100


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else (d or "")


def summary(pacs: Pacs, ref: StudyRef, version: str | None = None) -> dict:
    """One row of the list (a few QIDO/WADO metadata requests; no pixels)."""
    uid = ref.study_uid
    images, srs = candidates(pacs.series(uid), lambda s: pacs.series_metadata(uid, s))
    views = sorted({c.view.upper() or "?" for c in images}, key=lambda v: (v not in ("PA", "AP"), v))
    done = False
    if version:
        done = any(is_ours_for(m, version) for s in srs for m in pacs.series_metadata(uid, s))
    return {"study": ref.short, "date": _date(ref.date), "modality": ", ".join(m for m in ref.modalities if m != "SR"),
            "views": ", ".join(views), "images": len(images), "SR of this model": "yes" if done else "no"}


def list_studies(pacs: Pacs, *, since: str | None = None, version: str | None = None,
                 limit: int = MAX_LISTED) -> tuple[list[dict], dict[str, StudyRef]]:
    """The newest ``limit`` CR/DX studies (from ``since`` on): their rows, and short hash -> StudyRef."""
    refs = list(reversed(pacs.find_studies(since=since)))[:limit]
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda r: summary(pacs, r, version), refs))
    return rows, {r.short: r for r in refs}
