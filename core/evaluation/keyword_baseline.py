"""Keyword baseline: finding words with a negation rule over FINDINGS + IMPRESSION.

It shows how much of the report-mode task is reading: the MeSH labels of this collection
were coded from the very same report text, so a few words and one negation rule already
score macro AUC around 0.98 on it. Image-only and indication-only are the honest tasks.
"""
from __future__ import annotations

import re

import numpy as np

from core.data.findings import record
from core.data.labels import FINDINGS

NEGATIONS = ("no ", "not ", "without", "negative for", "free of", "clear of", "resolved", "resolution of",
             "no evidence of", "rather than", "removed", "absence of")
_SENTENCE = re.compile(r"(?<=[.;:!?])\s+|\n")
_PATTERNS = {f: [re.compile(p) for p in record(f).keywords] for f in FINDINGS}


def keyword_scores(text: str) -> list[float]:
    """Per finding: 1.0 for an affirmed mention, 0.25 for a negated-only mention, 0 otherwise.
    (Graded so that "mentioned but negated" ranks above "never mentioned".)"""
    sentences = [s.lower() for s in _SENTENCE.split(text or "") if s.strip()]
    out = []
    for finding in FINDINGS:
        score = 0.0
        for s in sentences:
            for pattern in _PATTERNS[finding]:
                match = pattern.search(s)
                if not match:
                    continue
                pos = match.end()  # a negation anywhere before the end ("heart is not enlarged")
                negated = any(neg in s[:pos] for neg in NEGATIONS)
                score = max(score, 0.25 if negated else 1.0)
        out.append(score)
    return out


def keyword_matrix(texts: list[str]) -> np.ndarray:
    return np.array([keyword_scores(t) for t in texts], dtype=float).reshape(len(texts), len(FINDINGS))


_RULE_OUT = {f: re.compile(record(f).rule_out) for f in FINDINGS if record(f).rule_out}


def rules_out(text: str, finding: str) -> bool:
    """Whether a sentence of the report explicitly rules the finding out (core.data.findings: its rule_out)."""
    pattern = _RULE_OUT.get(finding)
    return bool(pattern) and any(pattern.search(s.lower()) for s in _SENTENCE.split(text or "") if s.strip())


def negated_only(text: str, findings) -> set[str]:
    """Findings the text mentions only to rule out (the rule's negated-only score), e.g. Edema in
    "Stable cardiomegaly without overt pulmonary edema."; findings this rule has no words for are never in it."""
    scores = dict(zip(FINDINGS, keyword_scores(text), strict=True))
    return {f for f in findings if scores.get(f) == 0.25}
