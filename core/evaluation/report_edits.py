"""Report QA's edits of a real report (scripts/report_qa.py counts what the discordance flags catch):
**deny** a finding (its sentences replaced by the finding's denial), **delete** them, or **add** a false
assertion. The words come from the finding's record (core.data.findings); a finding without them
(``Finding.editable`` false) is left unedited."""
from __future__ import annotations

import re

from core.data.findings import record

EDITS = ("deny", "delete", "add")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def edit_report(text: str, finding: str, edit: str) -> str:
    """The report after one edit; the report unchanged for a finding without report-QA words."""
    r = record(finding)
    if edit not in EDITS:
        raise ValueError(f"edit {edit!r} is not one of {', '.join(EDITS)}")
    if not r.editable:
        return text
    parts = sentences(text)
    if edit == "add":
        return " ".join([*parts, r.assertion])
    about = re.compile(r.topic, re.I)
    kept = [s for s in parts if not about.search(s)]
    if edit == "deny":
        kept.append(r.denial)
    return " ".join(kept)
