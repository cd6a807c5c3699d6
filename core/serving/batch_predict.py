"""Prediction: the model's probabilities for a batch of studies (the predictor's model call) into
``Prediction``s, each with its thresholds, held-out evidence, report QA and out-of-distribution
check. It takes what it needs: the model's facts (``ServedFacts``, once per loaded model) and
the model call, not the predictor."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.data.labels import TextMode, effective_mode
from core.evaluation.evidence import evidence_for, image_reliable
from core.evaluation.keyword_baseline import negated_only
from core.evaluation.operating_points import discordance
from core.evaluation.recalibration import apply_maps
from core.model.description import ModelDescription, describe
from core.model.recalibration_maps import calibrated_flags
from core.serving.decision import decide
from core.serving.prediction import Prediction, check_choice


@dataclass(frozen=True)
class ServedFacts:
    """What a prediction states beside the model's numbers, worked out once per loaded model from the
    weights' description (core.model.description): what this model predicts comes from its weights, not
    from this code."""
    description: ModelDescription
    findings: list[str]
    heads: list[str]
    text_modes: list[str]
    evidence: dict            # text mode -> head -> finding -> held-out evidence (core.evaluation.evidence)
    image_reliable: dict      # finding -> whether the image alone is reliable for it
    qa_points: dict           # report QA's operating points, of the findings the image supports
    # per-finding Platt maps, applied here as in evaluation (split_eval); thresholds and report-QA points in
    # the metadata are already on the recalibrated scale
    recalibration: dict | None
    calibrated: dict          # text mode -> head -> finding -> whether its number is calibrated

    @classmethod
    def of(cls, desc: ModelDescription) -> ServedFacts:
        findings, heads, modes = desc.findings, desc.heads, desc.text_modes
        return cls(desc, findings, heads, modes,
                   evidence={m: {h: evidence_for(desc, m, h, findings) for h in heads} for m in modes},
                   image_reliable=image_reliable(desc, findings), qa_points=qa_points(desc),
                   recalibration=desc.recalibration,
                   calibrated={m: {h: calibrated_flags(desc.recalibration, m, h, findings) for h in heads}
                               for m in modes})

    @property
    def thresholds(self) -> dict:
        """text mode -> head -> finding -> threshold, as the weights' description has them."""
        return self.description.thresholds


def qa_points(metadata) -> dict:
    """Report-QA operating points of the findings the image supports (core.evaluation.operating_points,
    core.evaluation.evidence); the others are never flagged."""
    qa = describe(metadata).discordance
    points = qa.points if qa else {}
    reliable = image_reliable(metadata, points)
    return {f: op for f, op in points.items() if reliable[f]}


# the model call: (grays, texts, effective modes) -> head -> studies x findings probabilities
Scores = Callable[[list[np.ndarray], list[str], list[str]], dict[str, np.ndarray]]


def predict_batch(facts: ServedFacts, scores: Scores, grays: list[np.ndarray], texts: list[str], modes: list[str], *,
                  version: str, ood=None, colorfulness: list[float] | None = None,
                  target: str | None = None) -> list[Prediction]:
    """One model call (``scores``) for the studies, stated with the model's ``facts``: thresholds, held-out
    evidence, report QA, the out-of-distribution guard ``ood`` (core.model.guard; None: none shipped)
    and decisions at the operating point ``target`` (None: each mode's default; core.serving.decision).
    ``version``: the model named in each Prediction."""
    p = facts
    t0 = time.perf_counter()
    for m in modes:
        check_choice("text mode", m, p.text_modes)
    modes = [effective_mode(t, m) for t, m in zip(texts, modes, strict=True)]
    probs = scores(grays, texts, modes)
    if p.recalibration:  # the weights' per-finding maps: the probability a user reads
        probs = {h: v.astype(np.float64) for h, v in probs.items()}
        for m in set(modes):
            rows = [i for i, mode in enumerate(modes) if mode == m]
            for h in p.heads:
                probs[h][rows] = apply_maps(p.recalibration, m, h, probs[h][rows], p.findings)
    ms = (time.perf_counter() - t0) * 1000 / len(grays)
    out = []
    for i, mode in enumerate(modes):
        heads = {h: {f: float(probs[h][i, k]) for k, f in enumerate(p.findings)} for h in p.heads}
        thr, evidence, calibrated = p.thresholds[mode], p.evidence[mode], p.calibrated[mode]
        if mode == TextMode.NONE:  # image only: one image number, not a fused head that read nothing beside it
            heads = {**heads, "fusion": heads["image"]}
            thr, evidence, calibrated = ({**d, "fusion": d["image"]} for d in (thr, evidence, calibrated))
        guard = ood.check(grays[i], colorfulness[i] if colorfulness else 0.0) if ood else None
        # report QA exists in report mode only: an indication rarely names the finding
        disc = (discordance(heads["image"], heads["text"], thr["text"], p.qa_points,
                            ruled_out=negated_only(texts[i], p.findings)) if mode == TextMode.REPORT else [])
        pred = Prediction(
            fusion=heads["fusion"], image=heads["image"], text=heads["text"], thresholds=dict(thr["fusion"]),
            head_thresholds={h: dict(thr[h]) for h in p.heads},
            discordant=[d["finding"] for d in disc],
            out_of_distribution=bool(guard.out_of_distribution) if guard else False,
            ood_score=float(guard.score) if guard else 0.0, ood_reason=guard.reason if guard else "",
            text_mode=mode, has_text=mode != TextMode.NONE, model=version, latency_ms=ms,
            evidence=copy.deepcopy(evidence["fusion"]),
            head_evidence=copy.deepcopy(evidence), image_reliable=dict(p.image_reliable),
            discordance=disc, discordance_score=max((d["score"] for d in disc), default=0.0),
            calibrated=dict(calibrated["fusion"]),
            head_calibrated={h: dict(calibrated[h]) for h in p.heads})
        out.append(pred.with_decisions(decide(pred, p.description, target)))
    return out
