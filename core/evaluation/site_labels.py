"""A site's labels: the ones its readers gave (``label_<Finding>`` columns) or, without them, the ones the
project's report reader takes from the report text; and how well the two agree where both exist.

The reader is the negation-aware keyword rule (core.evaluation.keyword_baseline): a finding is positive when
a sentence of the report affirms it ("Heart is enlarged."), negative when the report only rules it out ("No
edema.") or never names it. On the IU collection, whose labels were coded by hand from these same reports,
it is measured by ``agreement`` (docs/site-validation.md): it is a good reader of this collection's wording,
but a site's labels taken from its reports carry the reader's errors into every number (label noise lowers
the measured AUC; it does not raise it).
"""
from __future__ import annotations

import math

import numpy as np

from core.data.labels import FINDINGS
from core.evaluation.keyword_baseline import keyword_scores
from core.evaluation.metrics import wilson_ci

COLUMNS, REPORT = "columns", "report"


def report_labels(text: str, findings=FINDINGS) -> dict[str, int]:
    """finding -> 1 (the report affirms it) / 0 (rules it out or never names it); a finding the reader has
    no words for (not one of core.data.labels.FINDINGS) is left out (unknown)."""
    if not (text or "").strip():
        return {}
    scores = dict(zip(FINDINGS, keyword_scores(text), strict=True))
    return {f: int(scores[f] == 1.0) for f in findings if f in scores}


def site_labels(studies, findings, label_columns) -> tuple[np.ndarray, dict[str, str]]:
    """(Y, source per finding): Y is studies x findings with NaN where unknown. A finding with a label column
    takes the site's labels (empty cells unknown); any other finding is read from the report text."""
    Y = np.full((len(studies), len(findings)), np.nan)
    source = {f: COLUMNS if f in label_columns else REPORT for f in findings}
    read = [report_labels(s.report, findings) for s in studies] if REPORT in source.values() else []
    for k, f in enumerate(findings):
        for i, s in enumerate(studies):
            v = s.labels.get(f) if f in label_columns else read[i].get(f)
            if v is not None:
                Y[i, k] = v
    return Y, source


def labels_kind(source: dict[str, str]) -> str:
    """The JSON's ``labels``: "columns" when the site labelled any finding, else "report"."""
    return COLUMNS if COLUMNS in source.values() else REPORT


def _kappa(tp: int, fp: int, fn: int, tn: int) -> float | None:
    n = tp + fp + fn + tn
    if n == 0:
        return None
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    return None if math.isclose(pe, 1.0) else (po - pe) / (1 - pe)


def _r(x, nd=4):
    return None if x is None else round(float(x), nd)


def agreement(studies, findings, label_columns) -> dict | None:
    """Per labelled finding, the report reader against the site's labels (studies with both): n, the
    reader's sensitivity and specificity (Wilson 95% CIs), raw agreement and Cohen's kappa. None when no
    study has both a label and a report."""
    out = {}
    read = [report_labels(s.report, findings) for s in studies]
    for f in findings:
        if f not in label_columns:
            continue
        pairs = [(s.labels[f], r.get(f)) for s, r in zip(studies, read, strict=True)
                 if f in s.labels and s.report.strip()]
        pairs = [(y, r) for y, r in pairs if r is not None]
        if not pairs:
            continue
        y = np.array([p[0] for p in pairs])
        r = np.array([p[1] for p in pairs])
        tp, fp = int(((y == 1) & (r == 1)).sum()), int(((y == 0) & (r == 1)).sum())
        fn, tn = int(((y == 1) & (r == 0)).sum()), int(((y == 0) & (r == 0)).sum())
        out[f] = {"n": len(pairs), "positives": tp + fn, "reader_positives": tp + fp,
                  "agreement": _r((tp + tn) / len(pairs)), "kappa": _r(_kappa(tp, fp, fn, tn)),
                  "sensitivity": _r(tp / (tp + fn)) if tp + fn else None,
                  "sensitivity_ci": [_r(v) for v in wilson_ci(tp, tp + fn)] if tp + fn else None,
                  "specificity": _r(tn / (tn + fp)) if tn + fp else None,
                  "specificity_ci": [_r(v) for v in wilson_ci(tn, tn + fp)] if tn + fp else None}
    if not out:
        return None
    return {"reader": "core.evaluation.keyword_baseline (negation-aware keywords over the report)",
            "findings": out}
