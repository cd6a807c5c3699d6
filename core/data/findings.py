"""One record per finding: every fact the tool keeps about a finding, in one place.

A new finding is one more ``Finding`` in ``RECORDS``: the labels read from the IU MeSH coding
(``core.data.labels``), the keyword baseline and its negation rule (``core.evaluation.keyword_baseline``),
report QA's edits (``core.evaluation.report_edits``), the SR's code (``core.pacs.sr``) and the pages' names
all read it from here (tests/project/test_sixth_finding.py adds one). Which findings the *image* supports
is not a fact of the finding but of a model: it comes from the weights' evidence
(``ModelDescription.image_reliable``), never from this table.

The terms follow the CheXpert labeller's grouping: pulmonary congestion counts as Edema, an
enlarged cardiac shadow as Cardiomegaly. Keywords and negation cues are regular expressions
written from the wording of this collection's reports (FINDINGS + IMPRESSION, lower case).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    name: str                          # the label the weights carry and every output uses
    display: str                       # how a reader reads it in a sentence (the SR's code meaning)
    mesh: tuple[str, ...] = ()         # MeSH descriptors (the first component of a term), lower case
    mesh_qualified: tuple[str, ...] = ()  # descriptor/qualifier pairs that also count ("cardiac shadow/enlarged")
    keywords: tuple[str, ...] = ()     # the keyword baseline's patterns
    rule_out: str | None = None        # a sentence that explicitly rules the finding out
    topic: str | None = None           # sentences "about" the finding (report QA deletes or denies them)
    denial: str | None = None          # report QA's sentence denying it
    assertion: str | None = None       # report QA's false assertion of it
    snomed: str | None = None          # SNOMED CT concept id (the SR's code); None: the tool's own scheme

    @property
    def editable(self) -> bool:
        """Report QA can write the three edits of this finding."""
        return bool(self.topic and self.denial and self.assertion)


_NEGATION = r"\b(no|without|negative for|free of)\b[^.;]{0,60}\b"

RECORDS: list[Finding] = [
    Finding(
        "Pneumonia", "Pneumonia", mesh=("pneumonia",), keywords=(r"pneumonia",),
        rule_out=_NEGATION + "pneumonia",
        topic=r"pneumoni|infecti|infiltrat", denial="No evidence of pneumonia.",
        assertion="Right lower lobe pneumonia.", snomed="233604007"),
    Finding(
        "Edema", "Pulmonary edema", mesh=("pulmonary edema", "edema", "pulmonary congestion"),
        keywords=(r"edema", r"congesti", r"vascular (prominence|engorgement|redistribution)",
                  r"(prominen\w*|engorge\w*) (of )?(the )?(central )?(pulmonary )?vascula", r"venous hypertension"),
        rule_out=(_NEGATION + r"(edema|vascular congestion|congestive)"
                  r"|\bnormal (pulmonary )?vascularity|pulmonary vascula\w* (is |are )?(within normal limits|normal)"),
        topic=r"edema|congesti|vascula|venous|fluid overload",
        denial="No pulmonary edema. Pulmonary vascularity is normal.", assertion="There is pulmonary edema.",
        snomed="19242006"),
    Finding(
        "Cardiomegaly", "Cardiomegaly", mesh=("cardiomegaly",), mesh_qualified=("cardiac shadow/enlarged",),
        keywords=(r"cardiomegaly", r"(heart|cardiac)( \w+){0,4} (enlarged|large|prominent|borderline)",
                  r"enlarged (heart|cardiac)", r"borderline (heart|cardiac)", r"cardiac enlargement",
                  r"upper limits? of normal (heart|cardiac)"),
        rule_out=(r"\b(no|without)\b[^.;]{0,30}\bcardiomegaly|(heart|cardiac)( size| silhouette)?( is| are)? "
                  r"(not|normal|within normal limits)|normal (heart|cardiac)( size| silhouette)?"
                  r"|heart size (is )?(normal|within normal limits)"),
        topic=r"heart|cardi", denial="The heart size is normal.", assertion="The heart is enlarged.",
        snomed="8186001"),
    Finding(
        "Atelectasis", "Atelectasis", mesh=("pulmonary atelectasis", "atelectasis"), keywords=(r"atelecta",),
        rule_out=r"\b(no|without|negative for)\b[^.;]{0,60}\batelecta",
        topic=r"atelecta", denial="No atelectasis.", assertion="There is bibasilar atelectasis.",
        snomed="46621007"),
    Finding(
        "Consolidation", "Lung consolidation", mesh=("consolidation",), keywords=(r"consolidat",),
        rule_out=r"\b(no|without|negative for)\b[^.;]{0,60}\bconsolidat",
        topic=r"consolidat|airspace|air space", denial="No focal consolidation.",
        assertion="There is right lower lobe consolidation.", snomed="95436008"),
]


def in_words(names_: list[str] | tuple[str, ...]) -> str:
    """'Edema, Cardiomegaly and Atelectasis': findings named in a sentence ('no finding' for none)."""
    names_ = list(names_)
    return ", ".join(names_[:-1]) + " and " + names_[-1] if len(names_) > 1 else (names_[0] if names_ else "no finding")


def names() -> tuple[str, ...]:
    """The findings the tool trains and labels by default, in their order."""
    return tuple(r.name for r in RECORDS)


def record(name: str) -> Finding:
    """The record of a finding; a name the table does not know (a newer model's finding) gets a bare
    record: its own name, no terms, no code."""
    for r in RECORDS:
        if r.name == name:
            return r
    return Finding(name, name)
