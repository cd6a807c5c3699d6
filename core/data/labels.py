"""The findings' labels from the IU X-ray MeSH coding, the text modes and the decision words.

A report is positive for a finding when one of its MeSH ``major`` terms (the manual coding)
starts with one of the finding's descriptors (``core.data.findings``, one record per finding);
the first path component of a MeSH term (``Pulmonary Atelectasis/base/left``) is the descriptor.
"""
from __future__ import annotations

from enum import StrEnum

from core.data import findings as _findings

# The default findings (core.data.findings holds each one's record: terms, keywords, negation cues, code)
FINDINGS: tuple[str, ...] = _findings.names()

# What every output says of a finding (core.serving.decision decides; the log checks rows against these)
FLAGGED, NOT_FLAGGED, NOT_ASSESSED = "flagged", "not flagged", "not assessed"
DECISIONS: tuple[str, ...] = (FLAGGED, NOT_FLAGGED, NOT_ASSESSED)

class TextMode(StrEnum):
    """What the text beside the film is: the finished report (report QA), the clinical indication (before
    the read), or none (image only). A StrEnum: members are their stored strings ("report" == TextMode.REPORT),
    so the log, the weights and every JSON keep the same words."""
    REPORT = "report"
    INDICATION = "indication"
    NONE = "none"


class Head(StrEnum):
    """The model's three outputs: the late fusion, the image alone, the text alone."""
    FUSION = "fusion"
    IMAGE = "image"
    TEXT = "text"


TEXT_MODES: tuple[TextMode, ...] = tuple(TextMode)
# The one default of the app, the CLI and the web batch: text given without a mode is the
# clinical indication (report mode reads the answer; it must be asked for).
DEFAULT_TEXT_MODE = TextMode.INDICATION
MODE_NAMES = {TextMode.REPORT: "report (report QA)", TextMode.INDICATION: "indication (before the read)",
              TextMode.NONE: "none (image only)"}
HEADS: tuple[Head, ...] = tuple(Head)


def resolve_mode(text: str | None, mode: str | None) -> str:
    """The mode a study is read in: the one asked for (``None``: the default), then the no-text
    rule. Text given with mode ``none`` would be dropped without a word: refused instead."""
    from core.errors import OptionError
    if mode is not None and mode not in TEXT_MODES:
        raise OptionError(f"text mode {mode!r} is not one of {', '.join(TEXT_MODES)}")
    if mode == TextMode.NONE and (text or "").strip():
        raise OptionError("text was given with text mode none, where it would not be read; "
                          "drop the text or choose indication or report")
    return effective_mode(text, mode or DEFAULT_TEXT_MODE)


def effective_mode(text: str | None, mode: str) -> str:
    """The no-text rule, decided here only: a study without text (empty or blank) is read in
    mode ``none``, whatever mode was asked for."""
    return mode if (text or "").strip() else TextMode.NONE


def mesh_descriptor(term: str) -> str:
    return term.split("/", 1)[0].strip().lower()


def labels_from_mesh(terms: list[str], findings: tuple[str, ...] = FINDINGS) -> list[int]:
    """Binary label per finding (order of ``findings``) from a report's MeSH terms."""
    lowered = [t.strip().lower() for t in terms]
    descriptors = {mesh_descriptor(t) for t in lowered}
    out = []
    for name in findings:
        r = _findings.record(name)
        hit = any(d in descriptors for d in r.mesh)
        hit = hit or any(t.startswith(q) for t in lowered for q in r.mesh_qualified)
        out.append(int(hit))
    return out
