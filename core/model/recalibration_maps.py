"""The weights' recalibration block, typed: for each text mode, head and finding either a fitted Platt map
or ``NotCalibrated`` with its reason (core.evaluation.recalibration fits and measures them; the
description reads and writes them). Whether a reader is shown a finding's number is ``is_calibrated``,
asked here and nowhere else."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.special import expit
from scipy.special import logit as _logit

_EPS = 1e-7


def logit(p) -> np.ndarray:
    return _logit(np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS))


def sigmoid(z) -> np.ndarray:
    return expit(np.asarray(z, dtype=float))


@dataclass(frozen=True)
class PlattMap:
    """p' = sigmoid(a * logit(p) + b); ``positives`` / ``n``: the data it was fitted on."""
    a: float
    b: float
    positives: int = 0
    n: int = 0
    provenance: dict = field(default_factory=dict, compare=False)  # e.g. a site adaptation's site and own map
    calibrated: ClassVar[bool] = True

    def __call__(self, p) -> np.ndarray:
        return sigmoid(self.a * logit(p) + self.b)

    def on_logits(self, z):
        """The map on logits (works on numpy arrays and torch tensors alike)."""
        return self.a * z + self.b

    def to_dict(self) -> dict:
        return {**self.provenance, "a": float(self.a), "b": float(self.b), "positives": int(self.positives),
                "n": int(self.n)}

    @classmethod
    def from_dict(cls, d: dict) -> PlattMap:
        rest = {k: v for k, v in d.items() if k not in ("a", "b", "positives", "n")}
        return cls(a=float(d["a"]), b=float(d["b"]), positives=int(d.get("positives", 0)), n=int(d.get("n", 0)),
                   provenance=rest)


@dataclass(frozen=True)
class NotCalibrated:
    """A finding the fit could not calibrate (too few positives, a score that does not rank it, or a map
    cross-validation did not confirm): the product shows no probability for it, only its decision."""
    reason: str
    positives: int | None = None
    n: int | None = None
    calibrated: ClassVar[bool] = False

    def to_dict(self) -> dict:
        out: dict = {"calibrated": False}
        if self.positives is not None:
            out["positives"] = int(self.positives)
        if self.n is not None:
            out["n"] = int(self.n)
        out["reason"] = self.reason
        return out


CalibrationMap = PlattMap | NotCalibrated


def map_from_dict(d: dict) -> CalibrationMap:
    if "a" in d:
        return PlattMap.from_dict(d)
    return NotCalibrated(reason=str(d.get("reason") or "not calibrated"), positives=d.get("positives"), n=d.get("n"))


Maps = dict[str, dict[str, dict[str, CalibrationMap]]]  # text mode -> head -> finding -> map


def maps_from_dict(d: dict | None) -> Maps:
    return {m: {h: {f: map_from_dict(e) for f, e in per.items()} for h, per in heads.items()}
            for m, heads in (d or {}).items()}


def maps_to_dict(maps: Maps) -> dict:
    return {m: {h: {f: e.to_dict() for f, e in per.items()} for h, per in heads.items()} for m, heads in maps.items()}


@dataclass(frozen=True)
class Recalibration:
    """The block as the weights carry it: the maps, and how and where they were fitted (``extra``: the
    fitting record — formula, fitted_on, min_positives, thresholds and report-QA points before the maps,
    the cross-validation that confirmed them, when and by what — kept key for key)."""
    maps: Maps = field(default_factory=dict)
    method: str | None = "platt"
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> Recalibration:
        d = dict(d)
        return cls(maps=maps_from_dict(d.pop("maps", None)), method=d.pop("method", None), extra=d)

    def to_dict(self) -> dict:
        out = dict(self.extra)
        if self.method is not None:
            out["method"] = self.method
        out["maps"] = maps_to_dict(self.maps)
        return out

    def entry(self, mode: str, head: str, finding: str) -> CalibrationMap | None:
        return self.maps.get(mode, {}).get(head, {}).get(finding)

    def map_for(self, mode: str, head: str, finding: str) -> PlattMap | None:
        e = self.entry(mode, head, finding)
        return e if isinstance(e, PlattMap) else None

    def apply(self, mode: str, head: str, P: np.ndarray, findings: Sequence[str]) -> np.ndarray:
        """Probabilities (n x findings) of one mode and head through their maps (identity where none)."""
        out = np.array(P, dtype=float, copy=True)
        for k, f in enumerate(findings):
            m = self.map_for(mode, head, f)
            if m is not None:
                out[:, k] = m(out[:, k])
        return out


def is_calibrated(recalibration: Recalibration | None, mode: str, head: str, finding: str) -> bool:
    """THE rule for showing a finding's number: its probability in this mode and head went through a
    fitted map. Weights without a recalibration block (older ones) say nothing: shown, as before."""
    return recalibration is None or recalibration.map_for(mode, head, finding) is not None


def calibrated_flags(recalibration: Recalibration | None, mode: str, head: str,
                     findings: Sequence[str]) -> dict[str, bool]:
    """finding -> ``is_calibrated`` for one text mode and head."""
    return {f: is_calibrated(recalibration, mode, head, f) for f in findings}
