"""The five findings and how they are read from the IU X-ray MeSH coding.

One place for the mapping, so training, evaluation, the keyword baseline and the
model card all agree. A report is positive for a finding when one of its MeSH
``major`` terms (the manual coding) starts with one of the listed descriptors; the
first path component of a MeSH term (``Pulmonary Atelectasis/base/left``) is the
descriptor. Synonyms follow the CheXpert labeller's grouping: pulmonary congestion
counts as Edema, an enlarged cardiac shadow as Cardiomegaly.
"""
from __future__ import annotations

FINDINGS: tuple[str, ...] = ("Pneumonia", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation")

# finding -> MeSH descriptors (first component of a term, compared case-insensitively)
MESH_MAP: dict[str, tuple[str, ...]] = {
    "Pneumonia": ("pneumonia",),
    "Edema": ("pulmonary edema", "edema", "pulmonary congestion"),
    "Cardiomegaly": ("cardiomegaly",),
    "Atelectasis": ("pulmonary atelectasis", "atelectasis"),
    "Consolidation": ("consolidation",),
}
# Cardiac Shadow/enlarged is coded with a qualifier rather than its own descriptor.
MESH_QUALIFIED: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": ("cardiac shadow/enlarged",),
}

# Regular expressions the keyword baseline looks for in FINDINGS + IMPRESSION
# (see core/evaluation/keyword_baseline.py); written from the wording of this collection's reports.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "Pneumonia": (r"pneumonia",),
    "Edema": (r"edema", r"congesti", r"vascular (prominence|engorgement|redistribution)",
              r"(prominen\w*|engorge\w*) (of )?(the )?(central )?(pulmonary )?vascula", r"venous hypertension"),
    "Cardiomegaly": (r"cardiomegaly", r"(heart|cardiac)( \w+){0,4} (enlarged|large|prominent|borderline)",
                     r"enlarged (heart|cardiac)", r"borderline (heart|cardiac)", r"cardiac enlargement",
                     r"upper limits? of normal (heart|cardiac)"),
    "Atelectasis": (r"atelecta",),
    "Consolidation": (r"consolidat",),
}

# A sentence that explicitly rules the finding out ("No pulmonary edema.", "The heart is not enlarged."):
# how report QA is checked for reading a negation as a finding (scripts/choose_operating_points.py)
RULE_OUT: dict[str, str] = {
    "Pneumonia": r"\b(no|without|negative for|free of)\b[^.;]{0,60}\bpneumonia",
    "Edema": (r"\b(no|without|negative for|free of)\b[^.;]{0,60}\b(edema|vascular congestion|congestive)"
              r"|\bnormal (pulmonary )?vascularity|pulmonary vascula\w* (is |are )?(within normal limits|normal)"),
    "Cardiomegaly": (r"\b(no|without)\b[^.;]{0,30}\bcardiomegaly|(heart|cardiac)( size| silhouette)?( is| are)? "
                     r"(not|normal|within normal limits)|normal (heart|cardiac)( size| silhouette)?"
                     r"|heart size (is )?(normal|within normal limits)"),
    "Atelectasis": r"\b(no|without|negative for)\b[^.;]{0,60}\batelecta",
    "Consolidation": r"\b(no|without|negative for)\b[^.;]{0,60}\bconsolidat",
}

# What every output says of a finding (core.serving.decision decides; the log checks rows against these)
FLAGGED, NOT_FLAGGED, NOT_ASSESSED = "flagged", "not flagged", "not assessed"
DECISIONS: tuple[str, ...] = (FLAGGED, NOT_FLAGGED, NOT_ASSESSED)

TEXT_MODES: tuple[str, ...] = ("report", "indication", "none")
# The one default of the app, the CLI and the web batch: text given without a mode is the
# clinical indication (report mode reads the answer; it must be asked for).
DEFAULT_TEXT_MODE = "indication"
MODE_NAMES = {"report": "report (report QA)", "indication": "indication (before the read)",
              "none": "none (image only)"}
HEADS: tuple[str, ...] = ("fusion", "image", "text")


def resolve_mode(text: str | None, mode: str | None) -> str:
    """The mode a study is read in: the one asked for (``None``: the default), then the no-text
    rule. Text given with mode ``none`` would be dropped without a word: refused instead."""
    from core.errors import OptionError
    if mode is not None and mode not in TEXT_MODES:
        raise OptionError(f"text mode {mode!r} is not one of {', '.join(TEXT_MODES)}")
    if mode == "none" and (text or "").strip():
        raise OptionError("text was given with text mode none, where it would not be read; "
                          "drop the text or choose indication or report")
    return effective_mode(text, mode or DEFAULT_TEXT_MODE)


def effective_mode(text: str | None, mode: str) -> str:
    """The no-text rule, decided here only: a study without text (empty or blank) is read in
    mode ``none``, whatever mode was asked for."""
    return mode if (text or "").strip() else "none"


def mesh_descriptor(term: str) -> str:
    return term.split("/", 1)[0].strip().lower()


def labels_from_mesh(terms: list[str]) -> list[int]:
    """Binary label per finding (order of FINDINGS) from a report's MeSH terms."""
    lowered = [t.strip().lower() for t in terms]
    descriptors = {mesh_descriptor(t) for t in lowered}
    out = []
    for finding in FINDINGS:
        hit = any(d in descriptors for d in MESH_MAP[finding])
        hit = hit or any(t.startswith(q) for t in lowered for q in MESH_QUALIFIED.get(finding, ()))
        out.append(int(hit))
    return out
