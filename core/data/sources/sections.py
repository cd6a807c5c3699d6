"""Split a MIMIC-CXR free-text report (``files/pXX/pSUBJECT/sSTUDY.txt``) into the three
sections our text modes read: INDICATION, FINDINGS and IMPRESSION.

Real reports name their sections in many ways; headings are upper-case words at the start
of a line followed by a colon. Variants mapped here (anything else — EXAMINATION, TECHNIQUE,
COMPARISON, NOTIFICATION, RECOMMENDATION(S), WET READ... — is dropped):

    INDICATION  <- INDICATION(S), HISTORY, CLINICAL HISTORY, REASON FOR EXAM(INATION),
                   CLINICAL INFORMATION, CLINICAL INDICATION
    FINDINGS    <- FINDINGS, FINDING, FINDINGS AND IMPRESSION, REPORT
    IMPRESSION  <- IMPRESSION(S), CONCLUSION(S), SUMMARY

A report with neither FINDINGS nor IMPRESSION headings (a few old ones are one paragraph)
keeps the text that follows the last dropped heading, or the whole text, as FINDINGS.
"""
from __future__ import annotations

import re

CANONICAL = {
    "INDICATION": "INDICATION", "INDICATIONS": "INDICATION", "HISTORY": "INDICATION",
    "CLINICAL HISTORY": "INDICATION", "REASON FOR EXAM": "INDICATION", "REASON FOR EXAMINATION": "INDICATION",
    "CLINICAL INFORMATION": "INDICATION", "CLINICAL INDICATION": "INDICATION",
    "FINDINGS": "FINDINGS", "FINDING": "FINDINGS", "FINDINGS AND IMPRESSION": "FINDINGS", "REPORT": "FINDINGS",
    "IMPRESSION": "IMPRESSION", "IMPRESSIONS": "IMPRESSION", "CONCLUSION": "IMPRESSION",
    "CONCLUSIONS": "IMPRESSION", "SUMMARY": "IMPRESSION",
}
# a heading: start of a line, capitals (with spaces, slashes, parentheses), a colon
_HEADING = re.compile(r"^[ \t]*([A-Z][A-Z /()&-]{1,40}?)[ \t]*:", re.MULTILINE)
_BANNER = re.compile(r"^\s*FINAL REPORT\s*$", re.MULTILINE)


def _clean(text: str) -> str:
    return " ".join(text.split())


def section_report(text: str) -> dict[str, str]:
    """{INDICATION, FINDINGS, IMPRESSION} -> text (only those present, non-empty)."""
    text = _BANNER.sub("", text.replace("\r\n", "\n"))
    heads = list(_HEADING.finditer(text))
    out: dict[str, list[str]] = {}
    tail = text  # text after the last heading we drop (fallback for unheaded reports)
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = _clean(text[m.end():end])
        name = CANONICAL.get(" ".join(m.group(1).split()))
        if name:
            if body:
                out.setdefault(name, []).append(body)
        else:
            tail = text[m.end():end]
    sections = {k: " ".join(v) for k, v in out.items()}
    if "FINDINGS" not in sections and "IMPRESSION" not in sections:
        body = _clean(tail if heads else text)
        if body:
            sections["FINDINGS"] = body
    return sections
