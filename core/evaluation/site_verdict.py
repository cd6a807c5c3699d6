"""Plain-words verdicts on a site's numbers against the shipped model's, and how many studies a verdict needs.

- **AUC** (``auc_verdict``): the site's AUC minus the shipped model's cross-validated one, with a 95% CI from
  both intervals (normal approximation: each CI's width / 3.92 as its standard error). Worse when the whole
  interval of the difference is below 0, better when above, consistent otherwise; with fewer than
  ``MIN_POSITIVES`` positives (or negatives) at the site: too few positives to say.
- **Calibration** (``calibration_verdict``): miscalibrated when the observed rate's Wilson CI excludes the
  mean prediction (overall, or among predictions >= 0.3 where there are at least ``MIN_TOP_BIN``), or the
  calibration slope's bootstrap CI excludes 1.
- **Operating point** (``point_verdict``): whether the site's specificity (and, with enough positives, its
  sensitivity) at the shipped threshold has a Wilson CI that holds the stated value.
- ``positives_for_auc_ci``: positives (and studies, at a prevalence) for an AUC's 95% CI to be +/- a half
  width (Hanley and McNeil's standard error): what a site needs before a finding's verdict can say much.
"""
from __future__ import annotations

import math

MIN_POSITIVES = 10      # as the project's "reliable from the image" rule: no verdict on fewer
MIN_TOP_BIN = 10        # predictions >= 0.3 before the top bin is judged
CONSISTENT = "consistent with the shipped evidence"
WORSE = "worse than the shipped evidence"
BETTER = "better than the shipped evidence"
TOO_FEW = "too few positives to say"
CALIBRATED, MISCALIBRATED = "consistent with calibrated", "miscalibrated"
AS_STATED, DIFFERS = "as stated", "differs from what a flag states"


def _se(ci) -> float | None:
    return None if not ci or any(c is None or c != c for c in ci) else (ci[1] - ci[0]) / 3.92


def auc_difference(site_auc, site_ci, shipped_auc, shipped_ci) -> tuple[float, list[float]] | None:
    """Site minus shipped AUC and its 95% CI (None when either AUC is missing)."""
    if site_auc is None or shipped_auc is None or site_auc != site_auc or shipped_auc != shipped_auc:
        return None
    se = math.hypot(_se(site_ci) or 0.0, _se(shipped_ci) or 0.0)
    d = site_auc - shipped_auc
    return d, [d - 1.96 * se, d + 1.96 * se]


def auc_verdict(site_auc, site_ci, shipped_auc, shipped_ci, *, positives: int, negatives: int) -> str:
    if min(positives, negatives) < MIN_POSITIVES:
        return TOO_FEW
    diff = auc_difference(site_auc, site_ci, shipped_auc, shipped_ci)
    if diff is None:
        return TOO_FEW
    _, (lo, hi) = diff
    return WORSE if hi < 0 else BETTER if lo > 0 else CONSISTENT


def _outside(ci, value) -> int:
    """-1 when the interval lies below ``value``, 1 above it, 0 when it holds it (or there is none)."""
    if not ci or value is None:
        return 0
    return -1 if ci[1] < value else 1 if ci[0] > value else 0


def calibration_verdict(cal: dict, *, positives: int) -> dict:
    """{"verdict", "reasons"} from a calibration measurement (core.evaluation.site_measure.calibration)."""
    if positives < MIN_POSITIVES:
        return {"verdict": TOO_FEW, "reasons": [f"{positives} positives (fewer than {MIN_POSITIVES})"]}
    reasons = []
    side = _outside(cal.get("observed_ci"), cal.get("mean_predicted"))
    if side:
        reasons.append(f"predicts {cal['mean_predicted']:.3f} on average where {cal['observed']:.3f} "
                       f"[{cal['observed_ci'][0]:.3f}, {cal['observed_ci'][1]:.3f}] are positive: "
                       + ("too high" if side < 0 else "too low"))
    slope_side = _outside(cal.get("slope_ci"), 1.0)
    if slope_side:
        lo, hi = cal["slope_ci"]
        reasons.append(f"calibration slope {cal['slope']:.2f} [{lo:.2f}, {hi:.2f}]: "
                       + ("too spread out (over-confident)" if slope_side < 0 else "too compressed (timid)"))
    top = cal.get("top_bin") or {}
    if (top.get("n") or 0) >= MIN_TOP_BIN:
        top_side = _outside(top.get("observed_ci"), top.get("mean_predicted"))
        if top_side:
            reasons.append(f"among predictions >= {top['cut']:.1f} (n = {top['n']}) the mean is "
                           f"{top['mean_predicted']:.2f} where {top['observed']:.2f} [{top['observed_ci'][0]:.2f}, "
                           f"{top['observed_ci'][1]:.2f}] are positive")
    return {"verdict": MISCALIBRATED if reasons else CALIBRATED, "reasons": reasons}


def point_verdict(site: dict, stated: dict | None) -> dict | None:
    """{"verdict", "reasons"}: the site's specificity (and sensitivity, on >= MIN_POSITIVES positives) at the
    shipped threshold against what a flag states (the shipped cross-validated numbers)."""
    if not stated:
        return None
    reasons = []
    checks = [("specificity", "false flags")]
    if (site.get("positives") or 0) >= MIN_POSITIVES:
        checks.append(("sensitivity", "missed findings"))
    for key, cost in checks:
        side = _outside(site.get(f"{key}_ci"), stated.get(key))
        if side:
            lo, hi = site[f"{key}_ci"]
            more = "more" if side < 0 else "fewer"
            reasons.append(f"{key} {site[key]:.2f} [{lo:.2f}, {hi:.2f}] against the stated {stated[key]:.2f} "
                           f"({more} {cost} than a flag states)")
    return {"verdict": DIFFERS if reasons else AS_STATED, "reasons": reasons}


def auc_se(auc: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil (1982): the standard error of an AUC on these counts."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc))
    return math.sqrt(max(var, 0.0) / (positives * negatives))


def positives_for_auc_ci(auc: float, half_width: float, prevalence: float) -> dict:
    """The fewest positives (and studies at ``prevalence``) for a 95% CI of +/- ``half_width`` around ``auc``."""
    if not 0 < prevalence < 1:
        raise ValueError("prevalence must be between 0 and 1")
    pos = 2
    while pos < 1_000_000:
        neg = max(1, round(pos * (1 - prevalence) / prevalence))
        if 1.96 * auc_se(auc, pos, neg) <= half_width:
            return {"positives": pos, "studies": pos + neg}
        pos += 1 if pos < 200 else 10
    return {"positives": None, "studies": None}
