"""What the model card says, worked out from the weights' description and the files in <weights>/eval
(pages/model_card.py only draws it): the findings with their records, what the image supports, which
findings are calibrated where, which have too few positives to be evidence, and the measurements the
card shows (calibration, report QA, the test split's metrics)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from core.data.findings import Finding, record
from core.evaluation import eval_files
from core.evaluation.evidence import MIN_POSITIVES, evidence_for
from core.model.description import ModelDescription
from core.model.recalibration_maps import maps_from_dict

RECALIBRATION_FILE = "recalibration.json"   # scripts/recalibrate.py writes it into <weights>/eval
REPORT_QA_FILE = "report_qa_test.json"     # scripts/report_qa.py
_SPLIT_WORDS = {"val": "validation", "validation": "validation", "val+test": "validation + test"}


@dataclass(frozen=True)
class CalibrationCard:
    """The calibration measurement (recalibration.json) and what it says per finding."""
    measurement: dict
    fitted_words: str                  # "validation" / "validation + test"
    pooled_maps: bool                  # fitted on more than validation (the test tab is a cross-fit)
    uncalibrated: list[str]            # no map in any mode or head: the app shows "not calibrated"
    partly: dict[str, list[str]]       # finding -> the mode/head cells without a map
    pooled_findings: list[str]         # the findings the pooled top bin is taken over


@dataclass(frozen=True)
class ModelCard:
    findings: tuple[Finding, ...]
    reliable: dict[str, bool]          # reliable from the image (the weights' evidence)
    few_positives: list[str]           # fewer than MIN_POSITIVES positives on the test split: CIs too wide
    calibration: CalibrationCard | None
    report_qa: dict | None
    results: dict = field(default_factory=dict)  # eval file stem -> metrics

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.findings)

    @property
    def weak(self) -> list[str]:
        return [f for f, ok in self.reliable.items() if not ok]

    @property
    def supported(self) -> list[str]:
        return [f for f, ok in self.reliable.items() if ok]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def calibration_card(measurement: dict | None, findings) -> CalibrationCard | None:
    if measurement is None:
        return None
    fitted = measurement.get("fitted_on") or {}
    split = fitted.get("split")
    maps = maps_from_dict(measurement.get("maps"))
    missing = {f: [f"{m}/{h}" for m, heads in maps.items() for h, per in heads.items()
                   if not (f in per and per[f].calibrated)] for f in findings}
    n_cells = sum(len(heads) for heads in maps.values())
    pooled = measurement.get("pooled_top_bin") or {}
    pooled_findings = measurement.get("supported") or next(
        (r["before"]["findings"] for block in pooled.values() for r in (block or {}).values()), [])
    return CalibrationCard(
        measurement=measurement, fitted_words=_SPLIT_WORDS.get(split, split or "validation"),
        pooled_maps=split not in (None, "val", "validation"),
        uncalibrated=[f for f, cells in missing.items() if cells and len(cells) == n_cells],
        partly={f: cells for f, cells in missing.items() if cells and len(cells) < n_cells},
        pooled_findings=list(pooled_findings))


def model_card(desc: ModelDescription | None, eval_dir: Path, findings=None) -> ModelCard:
    """The card of one weights folder (``desc`` None: no weights; the default findings then)."""
    from core.data.labels import FINDINGS
    names = tuple(findings or (desc.findings if desc is not None else FINDINGS))
    eval_dir = Path(eval_dir)
    reliable = {f: False for f in names} if desc is None else {f: desc.image_reliable.get(f, False) for f in names}
    few = []
    if desc is not None and desc.evidence:
        ev = evidence_for(desc, "none", "image", names)
        few = [f for f in names if ((ev[f].get("test") or ev[f]).get("positives") or 0) < MIN_POSITIVES]
    return ModelCard(
        findings=tuple(record(f) for f in names), reliable=reliable, few_positives=few,
        calibration=calibration_card(_read_json(eval_dir / RECALIBRATION_FILE), names),
        report_qa=_read_json(eval_dir / REPORT_QA_FILE),
        results=eval_files.load_results(eval_dir) if eval_dir.is_dir() else {})
