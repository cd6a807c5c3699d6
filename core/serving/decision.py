"""The one decision per finding that every output shows: *flagged*, *not flagged* or *not assessed*.

    decisions = decide(prediction, description)                       # the mode's default operating point
    decisions = decide(prediction, description, "sensitivity 0.80")   # one the user picked
    decisions.flagged()            # ["Cardiomegaly"]
    decisions["Edema"].sentence()  # what the flag means, in words and numbers

Nothing else decides. The rules, in order:

1. An out-of-distribution image: every finding *not assessed* (the guard's reason).
2. Image only and image + indication: a finding the image cannot support (core.evaluation.evidence)
   is *not assessed*: no probability, no flag.
3. A finding without an operating point in the weights (none was chosen for it in this mode): *not
   assessed*, with that reason.
4. Otherwise *flagged* when the fused probability (image only: the image head's) is at or above the
   operating point's threshold (core.evaluation.operating_targets), else *not flagged*.

The probability a reader may see is the calibrated one of an assessed finding; an assessed finding
whose number is not calibrated is decided but shows no number. Torch-free: the log, the SR workers
and the pages call it without the model.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.data.labels import FLAGGED, NOT_ASSESSED, NOT_FLAGGED, TextMode
from core.evaluation.operating_targets import NAMES, TargetError, default_name, parse_target
from core.model.description import describe

NOT_SUPPORTED = "not supported from the image in this mode (its image-only AUC is not reliable)"
NO_POINT = "no operating point in these weights for this finding and mode"
OOD_PREFIX = "out-of-distribution image"


@dataclass(frozen=True)
class FindingDecision:
    finding: str
    status: str
    reason: str = ""                          # why not assessed ("" when assessed)
    probability: float | None = None          # the calibrated number a reader may see, else None
    operating_point: dict | None = None       # the point decided at (name, threshold, sensitivity, ...)

    @property
    def flagged(self) -> bool:
        return self.status == FLAGGED

    @property
    def assessed(self) -> bool:
        return self.status != NOT_ASSESSED

    def operating_point_json(self) -> dict | None:
        """The contract's ``operating_point`` entry (DESIGN.md) and what else a reader needs."""
        op = self.operating_point
        if not op:
            return None
        keys = ("name", "threshold", "sensitivity", "specificity", "sensitivity_ci", "specificity_ci", "ppv",
                "prevalence", "positives", "negatives", "source")
        return {k: op.get(k) for k in keys}

    def sentence(self) -> str:
        """What this decision means, in one sentence (tables, the SR, the CLI)."""
        if not self.assessed:
            return f"Not assessed: {self.reason}."
        return f"{self.status.capitalize()} at {operating_point_words(self.operating_point, self.finding)}"


def _pct(x) -> str:
    return "?" if x is None else f"{100 * x:.0f}%"


def _ci(ci) -> str:
    return f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else ""


def operating_point_words(op: Mapping | None, finding: str) -> str:
    """'specificity 0.90: it flags 54% [42%, 65%] of studies with Edema and 10% [9%, 11%] of studies
    without (sensitivity 0.54, specificity 0.90); PPV 13% at the collection's 2.6% prevalence. Measured
    on ...'"""
    if not op:
        return "no stated operating point."
    spec = op.get("specificity")
    fp = None if spec is None else 1 - spec
    fp_ci = [1 - op["specificity_ci"][1], 1 - op["specificity_ci"][0]] if op.get("specificity_ci") else None
    text = (f"{op.get('name')}: it flags {_pct(op.get('sensitivity'))}{_ci(op.get('sensitivity_ci'))} of studies "
            f"with {finding} ({op.get('positives')} positives) and {_pct(fp)}{_ci(fp_ci)} of studies without it")
    if op.get("ppv") is not None:
        text += (f"; {_pct(op['ppv'])} of its flags are true at the collection's "
                 f"{100 * op['prevalence']:.1f}% prevalence")
    return text + f". Measured on {op.get('source')}."


@dataclass(frozen=True)
class Decisions:
    """One study's decisions (finding -> FindingDecision) at one named operating point."""
    mode: str
    operating_point: str
    findings: dict[str, FindingDecision] = field(default_factory=dict)
    out_of_distribution: bool = False

    def __getitem__(self, finding: str) -> FindingDecision:
        return self.findings[finding]

    def __iter__(self):
        return iter(self.findings.values())

    def flagged(self) -> list[str]:
        return [d.finding for d in self if d.flagged]

    def assessed(self) -> list[str]:
        return [d.finding for d in self if d.assessed]

    def not_assessed(self) -> dict[str, str]:
        return {d.finding: d.reason for d in self if not d.assessed}

    def status(self) -> dict[str, str]:
        """finding -> flagged | not flagged | not assessed: the JSON's ``decision``."""
        return {d.finding: d.status for d in self}

    def operating_points(self) -> dict[str, dict]:
        """finding -> operating point, for the assessed findings: the JSON's ``operating_point``."""
        return {d.finding: d.operating_point_json() for d in self if d.assessed and d.operating_point}

    def headline(self) -> str:
        """'Flagged (image only, specificity 0.90): Cardiomegaly' — what a list or a page says first."""
        if self.out_of_distribution:
            return "Not assessed: the image does not look like a frontal chest X-ray"
        flagged = self.flagged()
        return f"Flagged at {self.operating_point}: " + (", ".join(flagged) if flagged else "none")

    def to_json(self) -> dict:
        return {"operating_point_name": self.operating_point, "decision": self.status(),
                "operating_point": self.operating_points(), "not_assessed": self.not_assessed()}


def resolve_target(target: str | None, mode: str) -> str:
    """The canonical operating-point name (None: the mode's default); TargetError when unknown."""
    return default_name(mode) if target in (None, "", "default") else parse_target(target)


def point_for(description, mode: str, finding: str, name: str) -> dict | None:
    block = describe(description).operating_points
    entry = block.point(mode, finding, name) if block else None
    return dict(entry, name=name) if entry else None


def decide_values(description, *, mode: str, probabilities: Mapping[str, float], calibrated: Mapping[str, bool],
                  image_reliable: Mapping[str, bool], out_of_distribution: bool = False, ood_reason: str = "",
                  target: str | None = None) -> Decisions:
    """The policy (see the module docstring) on plain values: what a log row or a PACS outcome holds."""
    desc = describe(description)
    name = resolve_target(target, mode)
    out = {}
    for f in desc.findings:
        if out_of_distribution:
            reason = OOD_PREFIX + (f": {ood_reason.rstrip('.')}" if ood_reason else "")
            out[f] = FindingDecision(f, NOT_ASSESSED, reason)
            continue
        if mode != TextMode.REPORT and not image_reliable.get(f, False):
            out[f] = FindingDecision(f, NOT_ASSESSED, NOT_SUPPORTED)
            continue
        op = point_for(desc, mode, f, name)
        p = probabilities.get(f)
        if op is None or p is None:
            out[f] = FindingDecision(f, NOT_ASSESSED, NO_POINT)
            continue
        status = FLAGGED if p >= op["threshold"] else NOT_FLAGGED
        shown = round(float(p), 3) if calibrated.get(f, False) else None  # the one rule: Prediction.shown
        out[f] = FindingDecision(f, status, "", shown, op)
    return Decisions(mode=mode, operating_point=name, findings=out, out_of_distribution=bool(out_of_distribution))


def decide(prediction, description, target: str | None = None) -> Decisions:
    """The decisions of one ``Prediction`` (core.serving.prediction) at ``target`` (None: the default)."""
    return decide_values(description, mode=prediction.text_mode, probabilities=prediction.fusion,
                         calibrated=prediction.calibrated, image_reliable=prediction.image_reliable,
                         out_of_distribution=prediction.out_of_distribution, ood_reason=prediction.ood_reason,
                         target=target)


__all__ = ["FLAGGED", "NAMES", "NOT_ASSESSED", "NOT_FLAGGED", "Decisions", "FindingDecision",
           "TargetError", "decide", "decide_values", "operating_point_words", "point_for", "resolve_target"]
