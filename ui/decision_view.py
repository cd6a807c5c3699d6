"""Draw the decisions (core.serving.decision): what is flagged at which operating point, what a flag
means in words and numbers, and what was not assessed and why. Nothing here decides: a Prediction
carries its decisions, a log row the ones it was logged with; only a row logged before decisions were
recorded is decided, by ``core.serving.decision.decide_values`` (the one policy), and says so."""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from core.data.labels import FLAGGED, NOT_ASSESSED, TextMode
from core.serving.decision import Decisions, FindingDecision, TargetError, decide_values, resolve_target

MODE_WORDS = {"none": "image only", "indication": "image + indication", "report": "image + report"}
NOT_SHOWN = "not calibrated"   # an assessed finding whose number is not calibrated: decided, no number
NO_NUMBER = "—"                 # a finding not assessed: no number, no flag
LOGGED_EARLIER = "decided now (logged before decisions were recorded)"


def mode_words(mode: str) -> str:
    return MODE_WORDS.get(mode, mode)


# ------------------------------------------------------------------ where decisions come from

def from_prediction(pred) -> Decisions:
    """The decisions a ``Prediction`` carries (decided by the predictor at its operating point), as a
    ``Decisions`` the views below draw. The number a reader may see: the calibrated fused number of
    an assessed finding, to 3 decimals (as core.serving.decision gives it)."""
    return _rebuild(mode=pred.text_mode, name=pred.operating_point_name, status=pred.decision,
                    points=pred.operating_point, reasons=pred.not_assessed, probabilities=pred.fusion,
                    calibrated=pred.calibrated, out_of_distribution=pred.out_of_distribution,
                    findings=list(pred.fusion))


def _rebuild(*, mode: str, name: str, status: Mapping[str, str], points: Mapping[str, dict],
             reasons: Mapping[str, str], probabilities: Mapping[str, float], calibrated: Mapping[str, bool] | None,
             out_of_distribution: bool, findings: list[str]) -> Decisions:
    out = {}
    for f in findings:
        s = status.get(f, NOT_ASSESSED)
        if s == NOT_ASSESSED:
            out[f] = FindingDecision(f, s, reasons.get(f) or "not assessed when it was logged")
            continue
        p = probabilities.get(f)
        shown = round(float(p), 3) if p is not None and (calibrated or {}).get(f, False) else None
        out[f] = FindingDecision(f, s, "", shown, dict(points.get(f) or {}) or None)
    return Decisions(mode=mode, operating_point=name, findings=out, out_of_distribution=bool(out_of_distribution))


def from_row(row: Mapping, description, target: str | None, calibrated: Mapping[str, bool] | None
             ) -> tuple[Decisions | None, bool]:
    """(decisions, decided now) of one log row. A row logged with its decisions shows them (the reasons of
    the findings it did not assess come from the policy on the row's own values, where the loaded weights
    made it). A row from before decisions were recorded is decided now, with the loaded weights' operating
    points at ``target`` (None: the mode's default): ``decided now`` is then True. ``calibrated``: the row's
    fused calibration flags (history_view.calibration_of). None when it cannot be decided (no weights)."""
    mode, findings = row["text_mode"], list(row["fusion"])
    values = dict(mode=mode, probabilities=row["fusion"], calibrated=calibrated or {},
                  image_reliable=row.get("image_reliable") or {},
                  out_of_distribution=bool(row.get("out_of_distribution")))
    logged = row.get("decision") or {}
    if logged:
        policy = None
        if description is not None and row.get("operating_point_name"):
            try:
                policy = decide_values(description, **values, target=row["operating_point_name"])
            except TargetError:
                policy = None
        # the reasons the row recorded; rows logged before they were, from the policy on its own values
        reasons = dict(row.get("not_assessed") or {}) or {
            f: policy[f].reason for f in findings
            if policy is not None and f in policy.findings and policy[f].status == logged.get(f)}
        return _rebuild(name=row.get("operating_point_name") or "?", status=logged,
                        points=row.get("operating_point") or {}, reasons=reasons,
                        findings=findings, **{k: v for k, v in values.items() if k != "image_reliable"}), False
    if description is None:
        return None, False
    try:
        return decide_values(description, **values, target=target), True
    except TargetError:
        return decide_values(description, **values), True


# ------------------------------------------------------------------ words

def _pct(x) -> str:
    return "?" if x is None else f"{100 * x:.0f}%"


def rate_ci(op: Mapping | None, key: str) -> str:
    """'0.54 [0.42, 0.65]' (a rate with its 95% CI); '' without it."""
    if not op or op.get(key) is None:
        return ""
    ci = op.get(f"{key}_ci")
    return f"{op[key]:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def ppv_text(op: Mapping | None) -> str:
    """'0.13 at 2.6%': the positive predictive value at the collection's prevalence; '' without it."""
    if not op or op.get("ppv") is None:
        return ""
    prevalence = op.get("prevalence")
    return f"{op['ppv']:.2f}" + (f" at {100 * prevalence:.1f}%" if prevalence is not None else "")


def headline(decisions: Decisions) -> str:
    """'**Flagged at specificity 0.90** (image only): **Cardiomegaly**' — or that nothing of the assessed
    findings is flagged; what was not assessed is said under it (``not_assessed_lines``)."""
    where = f"at {decisions.operating_point} ({mode_words(decisions.mode)})"
    if decisions.out_of_distribution:
        return f"**Nothing assessed** {where}: the image does not look like a frontal chest X-ray."
    assessed, flagged = decisions.assessed(), decisions.flagged()
    if flagged:
        return f"**Flagged {where}:** " + ", ".join(f"**{f}**" for f in flagged)
    if assessed:
        return f"**Nothing flagged {where}** among " + ", ".join(assessed) + "."
    return f"**Nothing assessed** {where}."


def not_assessed_lines(decisions: Decisions) -> list[str]:
    """One line per reason: '**Not assessed**: Pneumonia, Consolidation — not supported from the image in
    this mode (...)'. No numbers: a finding not assessed has none."""
    by_reason: dict[str, list[str]] = {}
    for f, reason in decisions.not_assessed().items():
        by_reason.setdefault(reason, []).append(f)
    return [f"**Not assessed**: {', '.join(fs)} — {reason}." for reason, fs in by_reason.items()]


def flag_meanings(decisions: Decisions) -> list[str]:
    """Per flagged finding what the flag means, in words and numbers (FindingDecision.sentence): the
    operating point, sensitivity and specificity with their 95% CIs, the PPV at the prevalence."""
    return [f"**{d.finding}**" + (f" {d.probability:.3f}" if d.probability is not None else " (no number: "
                                  f"{NOT_SHOWN})") + f" — {d.sentence()}" for d in decisions if d.flagged]


def why_default(decisions: Decisions, discordant: list[str] | None = None) -> str | None:
    """The finding 'Why?' opens on: a discordant one (report QA), else the first flagged, else the first
    assessed; never one that was not assessed (None when nothing was)."""
    assessed = decisions.assessed()
    for f in [*(discordant or []), *decisions.flagged(), *assessed]:
        if f in assessed:
            return f
    return None


def point_caption(decisions: Decisions, chosen: str | None) -> str:
    """'operating point **specificity 0.90** (the default for image only)', and when the sidebar's
    choice now resolves to another point for this mode, that the result was decided at this one."""
    if not decisions.operating_point:
        return "no operating point (these weights carry none: nothing can be flagged)"
    try:
        default = resolve_target(None, decisions.mode)
        now = resolve_target(chosen, decisions.mode)
    except TargetError:
        default = now = decisions.operating_point
    text = f"operating point **{decisions.operating_point}**"
    if decisions.operating_point == default:
        text += f" (the default for {mode_words(decisions.mode)})"
    return text + ("" if now == decisions.operating_point else
                   f" — the sidebar now says {now}: press Predict to decide at it")


# ------------------------------------------------------------------ tables

def cell(d: FindingDecision) -> float | None:
    """The number a table shows for one decision: the calibrated probability of an assessed finding,
    else None (not assessed, or not calibrated)."""
    return d.probability if d.assessed else None


def flagged_cell(decisions: Decisions) -> str:
    """'Cardiomegaly, Edema' / 'none' / 'not assessed': what a list row says first."""
    if decisions.out_of_distribution or not decisions.assessed():
        return "not assessed"
    return ", ".join(decisions.flagged()) or "none"


def number_text(value: float | None) -> str:
    """A table cell of a number a reader may see: 3 decimals, or '—' (not assessed, or no calibrated
    number): never Streamlit's grey 'None'."""
    return NO_NUMBER if value is None or value != value else f"{value:.3f}"


def decision_table(decisions: Decisions) -> pd.DataFrame:
    """One row per finding: the decision, the number a reader may see, the operating point's threshold and
    what a flag there means (sensitivity and specificity with 95% CIs, PPV at the prevalence). A finding
    not assessed has no number and no flag; one not calibrated is decided but shows no number. Narrow
    enough for a 1,400 px window with the sidebar open (the heads are in their chart, discordance in its box)."""
    rows = []
    for d in decisions:
        op = d.operating_point if d.assessed else None
        row = {"finding": d.finding, "decision": d.status,
               "probability": (f"{d.probability:.3f}" if d.probability is not None else NOT_SHOWN) if d.assessed
               else NO_NUMBER,
               "threshold": f"{op['threshold']:.3f}" if op and op.get("threshold") is not None else NO_NUMBER,
               "sensitivity [95% CI]": rate_ci(op, "sensitivity") or NO_NUMBER,
               "specificity [95% CI]": rate_ci(op, "specificity") or NO_NUMBER,
               "PPV at prevalence": ppv_text(op) or NO_NUMBER}
        rows.append(row)
    return pd.DataFrame(rows).set_index("finding")


def _auc(entry: Mapping | None) -> str:
    if not entry or not isinstance(entry.get("auc"), (int, float)):
        return NO_NUMBER
    ci = entry.get("ci")
    return f"{entry['auc']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def evidence_table(findings: list[str], evidence: Mapping | None, image_evidence: Mapping | None,
                   image_reliable: Mapping[str, bool] | None, mode: str) -> pd.DataFrame:
    """One row per finding: the held-out evidence as the headline has it (the cross-validated out-of-fold
    AUC [95% CI] and its positives, core.evaluation.evidence), the test split's beside it with its count
    (where the entries carry it), the image-only evidence in text modes (where given), and whether the
    image supports the finding."""
    evidence = evidence or {}
    with_test = any((e or {}).get("test") for e in evidence.values())  # a log row keeps the headline only
    rows = []
    for f in findings:
        e = evidence.get(f) or {}
        test = e.get("test") or {}
        row = {"finding": f, f"AUC [95% CI] ({mode_words(mode)})": _auc(e),
               "positives": str(e.get("positives")) if e.get("auc") is not None else NO_NUMBER}
        if with_test:
            row["test split: AUC [95% CI] (positives)"] = (f"{_auc(test)} ({test.get('positives')})"
                                                           if test.get("auc") is not None else NO_NUMBER)
        if mode != TextMode.NONE and image_evidence is not None:  # whose evidence each column is, said in its name
            row["image only: AUC [95% CI]"] = _auc(image_evidence.get(f))
        row["from the image"] = "reliable" if (image_reliable or {}).get(f, False) else "NOT reliable"
        rows.append(row)
    return pd.DataFrame(rows).set_index("finding")


def evidence_caption(evidence: Mapping | None) -> str:
    """Where the headline evidence comes from, and why the test split's is only beside it."""
    sources = sorted({(e or {}).get("source") or "" for e in (evidence or {}).values()} - {""})
    tests = [(e or {}).get("test") for e in (evidence or {}).values() if (e or {}).get("test")]
    lows = sorted({t.get("positives") for t in tests if t.get("positives") is not None})
    text = "Evidence: " + ("; ".join(sources) if sources else "none in these weights") + "."
    if tests:
        text += (" The headline AUC is the cross-validated one: the training recipe retrained without each fold, "
                 "every report scored once by a model that never saw it. The test split's AUC (the shipped model) "
                 "is secondary" + (f": on as few as {lows[0]} positives it is not evidence" if lows else "") + ".")
    return text


def flagged_for_chart(decisions: Decisions) -> tuple[dict[str, float], dict[str, float], set[str]]:
    """(probability, threshold, flagged) of the findings a chart may draw: assessed, with a calibrated
    number and an operating point."""
    probs, thresholds = {}, {}
    for d in decisions:
        if d.assessed and d.probability is not None and d.operating_point and \
                d.operating_point.get("threshold") is not None:
            probs[d.finding], thresholds[d.finding] = d.probability, d.operating_point["threshold"]
    return probs, thresholds, {f for f in probs if decisions[f].status == FLAGGED}
