"""What a site's own studies say of the model: per task and finding, beside the shipped evidence.

    result = measure_site(desc, Y, probs, ood=..., labels=..., target=None)

``probs``: task -> studies x findings (NaN for a study outside the task: image + indication is measured on
the studies that have an indication); ``Y``: studies x findings, NaN where unknown. Per task and finding:
positives, AUC with its 95% bootstrap CI (scored as scripts/evaluate.py scores a split: the same function and,
when every label is known, the same resampling, so the same images give the same numbers), the calibration
(slope with bootstrap CI, mean prediction against the observed rate, the top bin >= 0.3), and sensitivity and
specificity at the operating point in use (the shipped threshold, Wilson CIs) — each beside the shipped
model's cross-validated numbers from its weights (evidence and operating_points blocks) — and the verdicts of
core.evaluation.site_verdict. Every study counts, the ones the guard calls out of distribution included (as in
evaluate.py); the guard's rate is reported beside.
"""
from __future__ import annotations

import numpy as np

from core.evaluation.metrics import bootstrap_auc_ci, roc_curve, safe_auc, wilson_ci
from core.evaluation.operating_targets import Counts, default_name
from core.evaluation.recalibration import map_for, measure
from core.evaluation.site_verdict import (
    MIN_POSITIVES,
    auc_difference,
    auc_verdict,
    calibration_verdict,
    point_verdict,
    positives_for_auc_ci,
)
from core.model.description import describe

TASKS = {"none/image": ("none", "image"), "indication/fusion": ("indication", "fusion")}
TASK_NAMES = {"none/image": "image only", "indication/fusion": "image + indication"}
CI_HALF_WIDTH = 0.05    # what "enough positives" means in the words of a too-few verdict


def _r(x, nd=4):
    return None if x is None or x != x else round(float(x), nd)


def _ci(ci, nd=4):
    return None if not ci or any(c is None or c != c for c in ci) else [_r(c, nd) for c in ci]


def shipped_auc(desc, mode: str, head: str, finding: str) -> dict:
    """The shipped model's held-out AUC of this task: cross-validated (pooled out-of-fold) where the weights
    carry it, else their test split's; with its CI, positives and where it comes from."""
    entry = (desc.evidence.entry(mode, head, finding) if desc.evidence else None) or {}
    cv = entry.get("cv") or {}
    if cv.get("pooled_auc") is not None:
        return {"auc": cv["pooled_auc"], "ci": cv.get("pooled_ci"), "positives": cv.get("positives"),
                "source": f"cross-validation, {cv.get('folds', '?')} folds (out-of-fold)"}
    if entry.get("auc") is not None:
        return {"auc": entry["auc"], "ci": entry.get("ci"), "positives": entry.get("positives"),
                "source": entry.get("source", "test split")}
    return {"auc": None, "ci": None, "positives": None, "source": "none in these weights"}


def shipped_point(desc, mode: str, finding: str, name: str) -> dict | None:
    """The weights' operating point of this mode and finding (threshold and the stated numbers), or None."""
    entry = desc.operating_points.point(mode, finding, name) if desc.operating_points else None
    return dict(entry) if entry else None


def calibration(y: np.ndarray, p: np.ndarray, *, n_boot: int) -> dict:
    """Slope (bootstrap CI), mean prediction against the observed rate (Wilson CI), the top bin >= 0.3."""
    m = measure(y, p, n_boot=n_boot)
    k, n = int(y.sum()), len(y)
    tb = m["top_bin"]
    return {"slope": _r(m["slope"], 3), "slope_ci": _ci(m["slope_ci"], 3), "intercept": _r(m["intercept"], 3),
            "mean_predicted": _r(p.mean()), "observed": _r(k / n) if n else None,
            "observed_ci": _ci(wilson_ci(k, n)),
            "top_bin": {"cut": tb["cut"], "n": tb["n"], "positives": tb["positives"],
                        "mean_predicted": _r(tb["mean_predicted"]), "observed": _r(tb["observed"]),
                        "observed_ci": _ci(tb["observed_ci"])}}


def curves(y: np.ndarray, p: np.ndarray, *, points: int = 60, bins: int = 10) -> dict:
    """What the plots draw: the ROC curve (at most ``points`` points) and a reliability diagram over
    ``bins`` equal-count bins of the prediction (mean prediction, observed rate, n)."""
    out = {"roc": None, "calibration": []}
    if len(y) and y.min() != y.max():
        fpr, tpr, _ = roc_curve(y, p)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).round().astype(int))
        out["roc"] = [[_r(fpr[i], 3), _r(tpr[i], 3)] for i in keep]
    order = np.argsort(p, kind="stable")
    for part in np.array_split(order, min(bins, len(order))) if len(order) else []:
        if len(part):
            out["calibration"].append([_r(p[part].mean()), _r(y[part].mean()), int(len(part))])
    return out


def measure_finding(y: np.ndarray, p: np.ndarray, desc, *, mode: str, head: str, finding: str, point: str,
                    auc_ci: list | None = None, n_boot: int = 1000) -> dict:
    """Every number of one task and finding (labels ``y`` known, probabilities ``p``). ``auc_ci``: a CI
    computed already (the task-wide bootstrap when every label is known), else it is bootstrapped here."""
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    auc = safe_auc(y, p) if len(y) else float("nan")
    if auc_ci is None and pos and neg:
        auc_ci = bootstrap_auc_ci(y[:, None], p[:, None], n_boot=n_boot)[0][0]
    ship = shipped_auc(desc, mode, head, finding)
    # the AUC and its CI unrounded: on the same images they are evaluate.py's to the last digit
    out = {"n": int(len(y)), "positives": pos, "negatives": neg, "auc": None if auc != auc else float(auc),
           "auc_ci": None if not auc_ci else [float(c) for c in auc_ci],
           "shipped_auc": ship["auc"], "shipped_auc_ci": ship["ci"], "shipped_positives": ship["positives"],
           "shipped_source": ship["source"]}
    diff = auc_difference(out["auc"], out["auc_ci"], ship["auc"], ship["ci"])
    out["auc_difference"] = None if diff is None else {"difference": _r(diff[0]), "ci": _ci(diff[1])}
    out["verdict"] = auc_verdict(out["auc"], out["auc_ci"], ship["auc"], ship["ci"], positives=pos, negatives=neg)
    if pos < MIN_POSITIVES and len(y):
        prevalence = max(pos, 1) / len(y)
        out["needed"] = {"ci_half_width": CI_HALF_WIDTH,
                         **positives_for_auc_ci(ship["auc"] or 0.8, CI_HALF_WIDTH, prevalence)}
    cal = calibration(y, p, n_boot=n_boot) if pos and neg else None
    out["calibration_slope"] = cal["slope"] if cal else None
    out["calibration"] = cal
    out["calibration_verdict"] = calibration_verdict(cal, positives=pos) if cal else None
    out["calibrated_in_weights"] = map_for(desc.recalibration, mode, head, finding) is not None
    stated = shipped_point(desc, mode, finding, point)
    out["operating_point"] = point if stated else None
    if stated:
        site = Counts.of(y, p >= stated["threshold"]).summary(pos / len(y) if len(y) else 0.0)
        out.update(threshold=stated["threshold"], sensitivity=site["sensitivity"],
                   sensitivity_ci=site["sensitivity_ci"], specificity=site["specificity"],
                   specificity_ci=site["specificity_ci"], shipped_sensitivity=stated.get("sensitivity"),
                   shipped_sensitivity_ci=stated.get("sensitivity_ci"),
                   shipped_specificity=stated.get("specificity"),
                   shipped_specificity_ci=stated.get("specificity_ci"), shipped_point_source=stated.get("source"))
        out["operating_point_verdict"] = point_verdict(site, stated)
    else:
        out.update(sensitivity=None, specificity=None,
                   note=("not assessed in this task (the image cannot support it): no operating point"
                         if not desc.image_reliable.get(finding) else
                         f"no operating point {point!r} in these weights for this finding and task"))
    out["curves"] = curves(y, p)
    return out


def measure_task(Y: np.ndarray, P: np.ndarray, desc, *, task: str, target: str | None = None,
                 n_boot: int = 1000) -> dict:
    """One task over the studies it holds (rows of ``P`` without NaN)."""
    mode, head = TASKS[task]
    point = target or default_name(mode)
    rows = ~np.isnan(P).any(axis=1)
    Yt, Pt = Y[rows], P[rows]
    findings = list(desc.findings)
    known = ~np.isnan(Yt)
    task_ci = None
    if known.all() and len(Yt):  # every label known: resample as evaluate.py does (same CIs on the same images)
        task_ci = bootstrap_auc_ci(Yt, Pt, n_boot=n_boot)[0]
    out = {"task": TASK_NAMES[task], "mode": mode, "head": head, "n_studies": int(rows.sum()),
           "operating_point": point, "findings": {}}
    for k, f in enumerate(findings):
        m = known[:, k]
        ci = task_ci[k] if task_ci is not None else None
        out["findings"][f] = measure_finding(Yt[m, k], Pt[m, k], desc, mode=mode, head=head, finding=f, point=point,
                                             auc_ci=ci, n_boot=n_boot)
        out["findings"][f]["assessed"] = bool(desc.image_reliable.get(f))
    return out


def ood_summary(flags: list[bool], per_study: list[list[bool]]) -> dict:
    """The guard on the site's images: how many it calls out of distribution (Wilson CI), and how many
    studies have no image it accepts."""
    k, n = int(sum(flags)), len(flags)
    return {"images": n, "out_of_distribution": k, "rate": _r(k / n) if n else None, "ci": _ci(wilson_ci(k, n)),
            "studies_without_an_accepted_image": int(sum(all(s) for s in per_study if s))}


def measure_site(description, Y: np.ndarray, probs: dict, *, ood: dict, labels: str, label_agreement: dict | None,
                 label_source: dict, target: str | None = None, n_boot: int = 1000, site: str = "") -> dict:
    """The validation result (the JSON of scripts/validate_site.py, ../shared/DESIGN.md)."""
    desc = describe(description)
    tasks = {task: measure_task(Y, P, desc, task=task, target=target, n_boot=n_boot)
             for task, P in probs.items() if task in TASKS and (~np.isnan(P).any(axis=1)).any()}
    out = {"site": site, "model": desc.version, "n_studies": int(len(Y)), "labels": labels,
           "label_source": label_source}
    if label_agreement:  # only where the site's labels and its reports both exist
        out["label_agreement"] = label_agreement
    return {**out, "out_of_distribution": ood, "operating_point": target or "each mode's default",
            "bootstrap": n_boot, "tasks": tasks}
