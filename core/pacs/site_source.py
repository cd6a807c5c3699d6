"""A site's studies from its PACS for validation: the chest CR/DX studies found over DICOMweb, each joined to
its report in a CSV keyed by StudyInstanceUID or AccessionNumber.

    table, load_image = pacs_table(pacs, Path("reports.csv"), findings, since="20260101")

The reports CSV has ``study_uid`` or ``accession``, then ``report``, optionally ``indication`` (else the
image header's, as scripts/pacs.py reads it) and ``label_<Finding>`` columns, as core.data.site_table reads
a site CSV. Per matched study the frontal image (ViewPosition PA before AP; else one of unknown view, which
the guard judges) is chosen from the headers now; its pixels are fetched when the model reaches it
(core.serving.site_run), so a resumed run fetches only what it has not scored. Studies without a report row,
report rows without a study and studies with no frontal-capable image are counted, never guessed at.
"""
from __future__ import annotations

import csv
from pathlib import Path

from core.data.images import decode_image
from core.data.site_table import SiteError, SiteTable, read_site_rows
from core.pacs.connection import Pacs
from core.pacs.studies import candidates, indication, ordered

KEYS = {"study_uid": "StudyInstanceUID", "accession": "AccessionNumber"}


def _read_reports(path: Path) -> tuple[list[dict], list[str], str]:
    if not path.is_file():
        raise SiteError(f"reports file {path} not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        rows, header = list(reader), [h.strip() for h in reader.fieldnames or []]
    keys = [k for k in KEYS if k in header]
    if len(keys) != 1:
        raise SiteError(f"{path.name} needs exactly one key column, study_uid (StudyInstanceUID) or accession "
                        "(AccessionNumber), beside report[,indication,label_<Finding>]")
    return rows, header, keys[0]


def frontal_of(pacs: Pacs, study_uid: str):
    """(series UID, SOP UID, header indication) of the image to score, or None when the study has none."""
    images, _ = candidates(pacs.series(study_uid), lambda s: pacs.series_metadata(study_uid, s))
    frontal, unknown, _ = ordered(images)
    pick = (frontal or unknown or [None])[0]
    return None if pick is None else (pick.series_uid, pick.sop_uid, indication(pick.meta))


def pacs_table(pacs: Pacs, reports: Path, findings, *, since: str | None = None):
    """(SiteTable, load_image) of the studies on ``pacs`` that have a row in ``reports``."""
    rows, header, key = _read_reports(Path(reports))
    refs = pacs.find_studies(since=since)
    if key == "study_uid":
        by_key = {r.study_uid: r.study_uid for r in refs}
    else:
        by_key = {acc: uid for uid, acc in pacs.accession_numbers(since=since).items()}
    kept, skipped = [], {"no study on the PACS": 0, "no frontal or unknown-view chest image": 0}
    for row in rows:
        uid = by_key.get((row.get(key) or "").strip())
        if uid is None:
            skipped["no study on the PACS"] += 1
            continue
        pick = frontal_of(pacs, uid)
        if pick is None:
            skipped["no frontal or unknown-view chest image"] += 1
            continue
        series_uid, sop_uid, header_indication = pick
        kept.append({**row, "image": f"{uid}/{series_uid}/{sop_uid}", "id": uid,
                     "indication": (row.get("indication") or "").strip() or header_indication})
    if not kept:
        raise SiteError(f"no study on {pacs.url} matches a row of {Path(reports).name} by {key} "
                        f"({len(rows)} rows, {len(refs)} CR/DX studies)")
    table = read_site_rows(kept, [*header, "image", "id", "indication"], findings, name=Path(reports).name,
                           check_files=False)
    table.source = f"{pacs.url} + {Path(reports).name} (by {KEYS[key]}; skipped: " + ", ".join(
        f"{n} {why}" for why, n in skipped.items()) + ")"

    def load_image(source: str):
        study_uid, series_uid, sop_uid = source.split("/")
        return decode_image(pacs.retrieve(study_uid, series_uid, sop_uid), filename="image.dcm")
    return table, load_image


__all__ = ["KEYS", "SiteTable", "frontal_of", "pacs_table"]
