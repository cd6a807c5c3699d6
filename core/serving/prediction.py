"""What the predictor hands back (``Prediction``, ``Attribution``) and the error for input it
cannot take (``InputError``). No torch: the pages and the log read these without the model."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from core.data.labels import FLAGGED, NOT_ASSESSED, Head, TextMode
from core.errors import CxrError


class InputError(CxrError, ValueError):
    """Input the model cannot take (unknown mode, bad finding...)."""


def check_choice(kind: str, value: str, allowed) -> None:
    """InputError naming the choices when ``value`` is not one of ``allowed`` (a mode, finding, head)."""
    if value not in allowed:
        raise InputError(f"unknown {kind} {value!r}; use one of {', '.join(allowed)}")


@dataclass
class Prediction:
    fusion: dict[str, float]
    image: dict[str, float]
    text: dict[str, float]
    thresholds: dict[str, float]                 # fused head, for this text mode
    head_thresholds: dict[str, dict[str, float]]  # every head, for this text mode
    discordant: list[str]                        # findings of ``discordance`` (report mode only)
    out_of_distribution: bool
    ood_score: float
    ood_reason: str
    text_mode: str
    has_text: bool
    model: str
    latency_ms: float = 0.0
    # held-out evidence for the fused number of each finding in this mode (core.evaluation.evidence)
    evidence: dict[str, dict] = field(default_factory=dict)
    head_evidence: dict[str, dict[str, dict]] = field(default_factory=dict)
    image_reliable: dict[str, bool] = field(default_factory=dict)
    # report QA: finding, direction, score, margin; strongest first (core.evaluation.operating_points)
    discordance: list[dict] = field(default_factory=list)
    discordance_score: float = 0.0
    # finding -> whether its probability went through the weights' recalibration map
    # (core.evaluation.recalibration): ``calibrated`` for the fused head in this mode, ``head_calibrated``
    # per head. A finding that cannot be calibrated (too few validation positives) keeps its
    # temperature-scaled number, which the app does not show; empty: the weights say nothing (older ones)
    calibrated: dict[str, bool] = field(default_factory=dict)
    head_calibrated: dict[str, dict[str, bool]] = field(default_factory=dict)
    # the decision per finding at the mode's default operating point (core.serving.decision: the one
    # policy): flagged | not flagged | not assessed; the operating point of each assessed finding
    decision: dict[str, str] = field(default_factory=dict)
    operating_point: dict[str, dict] = field(default_factory=dict)
    operating_point_name: str = ""
    not_assessed: dict[str, str] = field(default_factory=dict)   # finding -> why

    def to_json(self) -> dict:
        return asdict(self)

    def head(self, name: str) -> dict[str, float]:
        """One head's probabilities (finding -> probability, in the weights' order)."""
        heads = {"fusion": self.fusion, "image": self.image, "text": self.text}
        check_choice("head", name, heads)
        return heads[name]

    def is_calibrated(self, finding: str, head: str = "fusion") -> bool:
        """Whether this finding's number in ``head`` went through a fitted map (core.model.recalibration_maps;
        the predictor fills the flags for every finding, True for all with older weights that carry no maps).
        A flag that is missing means unknown: no number, as a log row of unknown calibration shows none."""
        flags = self.calibrated if head == Head.FUSION else self.head_calibrated.get(head, {})
        return bool(flags.get(finding, False))

    def shown(self, finding: str, head: str = "fusion") -> float | None:
        """THE number a reader may see for a finding, rounded as every output prints it: None where the
        finding is not assessed (the decision) or its number is not calibrated."""
        if self.decision.get(finding) == NOT_ASSESSED or not self.is_calibrated(finding, head):
            return None
        if head == Head.FUSION and self.text_mode == TextMode.NONE:  # image only: one number, the image head's
            head = "image"
        return round(float(self.head(head)[finding]), 3)

    def flagged(self) -> list[str]:
        """The findings flagged at the operating point this prediction was decided at."""
        return [f for f, status in self.decision.items() if status == FLAGGED]

    def with_decisions(self, decisions) -> Prediction:
        """A copy decided as ``decisions`` says (core.serving.decision.Decisions, e.g. at another point)."""
        points = decisions.operating_points()
        # the fused thresholds are the operating point's (of the findings it assessed)
        thresholds = {f: (points[f]["threshold"] if f in points else t) for f, t in self.thresholds.items()}
        return replace(self, decision=decisions.status(), operating_point=points, thresholds=thresholds,
                       operating_point_name=decisions.operating_point, not_assessed=decisions.not_assessed())


@dataclass
class Attribution:
    finding: str
    head: str
    method: str
    heatmap: np.ndarray                  # H x W in [0, 1], at the model's input size
    tokens: list[tuple[str, float]] = field(default_factory=list)  # (word piece, signed score)
    words: list[tuple[str, float]] = field(default_factory=list)   # pieces merged into words by the encoder
    convergence_delta: float | None = None
    seconds: float = 0.0
