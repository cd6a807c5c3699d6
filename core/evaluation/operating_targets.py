"""Operating points a reader can act on: each flag's threshold chosen for a target specificity
(or sensitivity), and what it means, measured where no threshold was fitted.

A target is scale-free: "specificity 0.90" is the 90th percentile of a model's probability among
studies without the finding. So it transfers between models of one recipe, where a threshold
does not (the cross-validated folds are three other models than the shipped one). Hence two
measurements and one threshold per (text mode, finding, target):

- **stated** (what every output says a flag means): on the recipe's cross-validated out-of-fold
  predictions (2,494 reports, 3 models), each model's reports split in ``inner`` parts, each part
  flagged at the threshold its model's other parts give for the target; pooled sensitivity and
  specificity with Wilson 95% CIs, and the PPV at the collection's prevalence.
- **threshold** (what the shipped model flags at): the same target on the shipped model's own
  held-out predictions (validation + test, calibrated scale: ~1,000 reports without each finding).
- **test** (a check): the threshold the validation split alone gives, measured on the test split.

Weights without cross-validation (a fresh ``scripts/train.py`` run) get thresholds and stated
numbers from their validation split, and say so in ``source``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.data.labels import TextMode
from core.errors import CxrError
from core.evaluation.metrics import wilson_ci

SPECIFICITY, SENSITIVITY = "specificity", "sensitivity"
TARGETS = ((SPECIFICITY, 0.80), (SPECIFICITY, 0.90), (SPECIFICITY, 0.95), (SPECIFICITY, 0.98),
           (SENSITIVITY, 0.80), (SENSITIVITY, 0.90))
DEFAULT = (SPECIFICITY, 0.90)
# With the finished report the text reads it (held-out AUC ~0.99 for the shipped model): at 0.90 a tenth
# of the reports that rule a finding out were flagged for it (scripts/choose_operating_points.py --data)
MODE_DEFAULTS = {"report": (SPECIFICITY, 0.98)}
RULE = ("a flag is a probability at or above the threshold that gives the target specificity (or sensitivity) "
        "on held-out reports; sensitivity and specificity stated as measured on cross-validated out-of-fold "
        "predictions, each part flagged at the threshold its model's other parts give")


MODE_HEAD = {"none": "image", "indication": "fusion", "report": "fusion"}  # the head a decision reads


class TargetError(CxrError, ValueError):
    """An operating point that is not one of the weights' choices."""


def target_name(kind: str, value: float) -> str:
    return f"{kind} {value:.2f}"


DEFAULT_NAME = target_name(*DEFAULT)
NAMES = tuple(target_name(*t) for t in TARGETS)


def default_name(mode: str) -> str:
    """The operating point a decision in this text mode uses unless the user picks another."""
    return target_name(*MODE_DEFAULTS.get(mode, DEFAULT))


def parse_target(text: str) -> str:
    """'specificity 0.90', 'spec=0.9', 'sensitivity:0.8', 'sens0.80' -> the canonical name."""
    raw = (text or "").strip().lower().replace("=", " ").replace(":", " ")
    for kind in (SPECIFICITY, SENSITIVITY):
        for prefix in (kind, kind[:4]):
            if raw.startswith(prefix):
                rest = raw[len(prefix):].strip()
                try:
                    value = float(rest)
                except ValueError:
                    break
                name = target_name(kind, value)
                if name in NAMES:
                    return name
    raise TargetError(f"unknown operating point {text!r}; use one of: {', '.join(NAMES)}")


def split_name(name: str) -> tuple[str, float]:
    kind, value = name.split(" ")
    return kind, float(value)


def threshold_for(y: np.ndarray, p: np.ndarray, kind: str, value: float) -> float | None:
    """The lowest threshold t with P(p < t | negative) >= value (specificity), or the highest with
    P(p >= t | positive) >= value (sensitivity); None when the class it is read from is empty."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    if kind == SPECIFICITY:
        neg = np.sort(p[y == 0])
        if len(neg) == 0:
            return None
        i = min(int(math.ceil(value * len(neg))), len(neg) - 1)
        # strictly above the (value)-quantile negative, so at least that share sits below it
        return float(np.nextafter(neg[i - 1], np.inf)) if i > 0 and neg[i] == neg[i - 1] else float(neg[i])
    pos = np.sort(p[y == 1])
    if len(pos) == 0:
        return None
    return float(pos[int(math.floor((1 - value) * len(pos)))])


@dataclass(frozen=True)
class Counts:
    tp: int
    fn: int
    tn: int
    fp: int

    @classmethod
    def of(cls, y, flagged) -> Counts:
        y, f = np.asarray(y) == 1, np.asarray(flagged, bool)
        return cls(int((y & f).sum()), int((y & ~f).sum()), int((~y & ~f).sum()), int((~y & f).sum()))

    def __add__(self, o: Counts) -> Counts:
        return Counts(self.tp + o.tp, self.fn + o.fn, self.tn + o.tn, self.fp + o.fp)

    def summary(self, prevalence: float) -> dict:
        pos, neg = self.tp + self.fn, self.tn + self.fp
        sens = self.tp / pos if pos else None
        spec = self.tn / neg if neg else None
        return {"sensitivity": _r(sens), "specificity": _r(spec),
                "sensitivity_ci": [_r(x) for x in wilson_ci(self.tp, pos)] if pos else None,
                "specificity_ci": [_r(x) for x in wilson_ci(self.tn, neg)] if neg else None,
                "positives": pos, "negatives": neg, "ppv": _r(ppv(sens, spec, prevalence)),
                "prevalence": _r(prevalence)}


def _r(x):
    return None if x is None or x != x else round(float(x), 4)


def ppv(sens, spec, prevalence) -> float | None:
    """Positive predictive value at ``prevalence`` (Bayes): what share of flags are true."""
    if sens is None or spec is None:
        return None
    flagged = sens * prevalence + (1 - spec) * (1 - prevalence)
    return None if flagged <= 0 else sens * prevalence / flagged


def stratified_parts(y: np.ndarray, parts: int, seed: int) -> np.ndarray:
    """A part index per report, stratified by label (deterministic in seed)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(y), int)
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        out[idx] = (np.arange(len(idx)) + rng.integers(parts)) % parts
    return out


def cross_fitted_counts(folds: list[tuple[np.ndarray, np.ndarray]], kind: str, value: float, *,
                        inner: int = 2, seed: int = 0) -> Counts | None:
    """Pooled counts over models' held-out predictions ``[(y, p), ...]`` (one finding), each part of a
    model's reports flagged at the threshold the model's other parts give for the target."""
    total = Counts(0, 0, 0, 0)
    for i, (y, p) in enumerate(folds):
        part = stratified_parts(np.asarray(y), inner, seed + i)
        for s in range(inner):
            fit, held = part != s, part == s
            t = threshold_for(y[fit], p[fit], kind, value)
            if t is None:
                return None
            total = total + Counts.of(y[held], p[held] >= t)
    return total


def choose(*, shipped: tuple[np.ndarray, np.ndarray], stated_folds: list[tuple[np.ndarray, np.ndarray]] | None,
           check: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None,
           prevalence: float, shipped_source: str, stated_source: str, inner: int = 2) -> dict:
    """target name -> operating point of one mode and finding: ``threshold`` (from ``shipped``, (y, p) of
    the shipped model's held-out reports), the stated numbers (cross-fitted over ``stated_folds``; over
    ``shipped`` itself when there are none), and ``test`` (``check``: threshold from its first (y, p),
    measured on its second)."""
    out = {}
    y_s, p_s = shipped
    for kind, value in TARGETS:
        t = threshold_for(y_s, p_s, kind, value)
        if t is None:
            continue
        counts = cross_fitted_counts(stated_folds or [shipped], kind, value, inner=inner)
        if counts is None:
            continue
        entry = {"threshold": round(t, 6), **counts.summary(prevalence),
                 "source": stated_source, "threshold_from": shipped_source}
        if check is not None:
            (y_fit, p_fit), (y_test, p_test) = check
            t_fit = threshold_for(y_fit, p_fit, kind, value)
            if t_fit is not None:
                entry["test"] = {"threshold": round(t_fit, 6), **Counts.of(y_test, p_test >= t_fit).summary(prevalence)}
        out[target_name(kind, value)] = entry
    return out


def assessed_findings(mode: str, findings, image_reliable: dict) -> list[str]:
    """Findings a decision can be made on in this mode: all with the report (the text reads them);
    otherwise those the image supports (core.evaluation.evidence)."""
    return [f for f in findings if mode == TextMode.REPORT or image_reliable.get(f)]


def validation_block(probs: dict, Y: np.ndarray, findings, image_reliable: dict, prevalence, *,
                     n_reports: int) -> dict:
    """The ``operating_points`` block of freshly trained weights, from their validation predictions
    ``probs[mode][head]`` alone (no cross-validation yet): thresholds and stated numbers cross-fitted on
    it, and said so in ``source``. ``scripts/choose_operating_points.py`` replaces it with the
    cross-validated one."""
    source = f"validation split ({n_reports} reports), each half flagged at the threshold from the other half"
    points = {}
    for mode, head in MODE_HEAD.items():
        if mode not in probs:
            continue
        P = probs[mode][head]
        points[mode] = {f: choose(shipped=(Y[:, k], P[:, k]), stated_folds=None, check=None,
                                  prevalence=float(prevalence[k]), shipped_source=source, stated_source=source)
                        for k, f in enumerate(findings) if f in assessed_findings(mode, findings, image_reliable)}
    return {"rule": RULE, "default": {m: default_name(m) for m in MODE_HEAD}, "choices": list(NAMES),
            "head": dict(MODE_HEAD), "prevalence": {f: _r(v) for f, v in zip(findings, prevalence, strict=True)},
            "points": points}
