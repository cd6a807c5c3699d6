"""Site adaptation, gated: refit the calibration maps and the operating points on a site's own studies.

    plan = plan_adaptation(desc, Y, probs, site="St Elsewhere")
    new = adapted_description(desc, plan, site=..., n_studies=..., labels="report")
    write_adapted(Path("weights"), Path("weights-site"), new)   # the shipped folder is never written

Per task (image only: the image head; image + indication: the fused head) and per finding the product
assesses in it (core.evaluation.evidence), on the site's served probabilities q (through the shipped map):

1. **Refused** with fewer than ``MIN_POSITIVES`` positives (or negatives): a map has two parameters and
   needs about ten events each (core.evaluation.recalibration). The refusal says how many studies that
   takes at the site's prevalence.
2. **Cross-fitted** (``PARTS`` parts, stratified by label): each part recalibrated by the map fitted on the
   other parts, and flagged at the threshold the other parts give for each target; every number this module
   reports for the adapted model comes from studies the refit did not see.
3. **Gated**: kept only when the cross-fitted log loss is lower than the shipped calibration's on the same
   studies (a proper score: it rewards calibration and ranking together); otherwise "not confirmed" and the
   finding keeps the shipped map and points.
4. The kept map is fitted on every site study and composed with the shipped one (two Platt maps make one:
   a = a1 * a0, b = a1 * b0 + b1), so the weights keep one map per mode, head and finding; the operating
   points are chosen on the site's recalibrated probabilities (core.evaluation.operating_targets.choose) and
   state the site's cross-fitted sensitivity and specificity and its prevalence.

The new description carries a new version (``<shipped>+site-<name>-<date>``) and its provenance
(``site_adaptation``: site, studies, date, label source, what was adapted, refused and why).
"""
from __future__ import annotations

import copy
import math
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.errors import CxrError
from core.evaluation import operating_targets as T
from core.evaluation.recalibration import (
    MIN_POSITIVES,
    FoldPredictions,
    PlattMap,
    Recalibration,
    cross_fitted,
    fit_platt,
    map_for,
)
from core.evaluation.site_measure import TASKS, calibration
from core.model.description import INT8_FILE, WEIGHTS_FILE, describe

PARTS = 5
ADAPTED, REFUSED, NOT_CONFIRMED, NOT_ASSESSED = "adapted", "refused", "not confirmed", "not assessed"


class AdaptError(CxrError, ValueError):
    """The site adaptation cannot be written as asked."""


def _r(x, nd=4):
    return None if x is None or x != x else round(float(x), nd)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def needed(positives: int, n: int, minimum: int = MIN_POSITIVES) -> dict:
    """How many positives a map needs, and about how many studies that is at this prevalence."""
    if positives <= 0:
        return {"positives": minimum, "studies": None}
    return {"positives": minimum, "studies": int(math.ceil(minimum * n / positives))}


def compose(site: PlattMap, shipped: PlattMap | None) -> PlattMap:
    """The one map that applies ``shipped`` then ``site``."""
    if shipped is None:
        return site
    return PlattMap(a=site.a * shipped.a, b=site.a * shipped.b + site.b, positives=site.positives, n=site.n)


def _refusal(f: str, pos: int, neg: int, n: int) -> str:
    need = needed(pos, n)
    rare = "positives" if pos <= neg else "negatives"
    count = min(pos, neg)
    where = (f"about {need['studies']:,} studies at this site's prevalence ({pos}/{n})" if need["studies"]
             else "more studies with the finding")
    return (f"{f}: {count} {rare} in {n} studies; a site calibration needs at least {MIN_POSITIVES} "
            f"({where})")


def adapt_finding(y: np.ndarray, q: np.ndarray, desc, *, mode: str, head: str, finding: str, site: str,
                  parts: int = PARTS, n_boot: int = 1000) -> dict:
    """The plan of one task and finding (see the module docstring)."""
    pos, n = int(y.sum()), len(y)
    neg = n - pos
    out = {"positives": pos, "negatives": neg, "n": n}
    if min(pos, neg) < MIN_POSITIVES:
        return {**out, "status": REFUSED, "reason": _refusal(finding, pos, neg, n), "needed": needed(pos, n)}
    uids = [str(i) for i in range(n)]
    fit_min = MIN_POSITIVES * (parts - 1) // parts  # each fitting set holds (parts - 1) / parts of them
    cf = cross_fitted([FoldPredictions(uids, q[:, None], y[:, None])], [finding], scheme="within", inner=parts,
                      min_positives=fit_min)
    if not cf["calibrated"][finding]:
        return {**out, "status": NOT_CONFIRMED,
                "reason": f"{finding}: a map could not be fitted on every part of the cross-fit"}
    crossed = cf["Q"][:, 0]
    before, after = log_loss(y, q), log_loss(y, crossed)
    out["cross_fitted"] = {"parts": parts, "log_loss_before": _r(before), "log_loss_after": _r(after),
                           "before": calibration(y, q, n_boot=n_boot), "after": calibration(y, crossed, n_boot=n_boot)}
    site_map = fit_platt(y, q)
    if site_map is None:
        return {**out, "status": NOT_CONFIRMED, "reason": f"{finding}: the site's scores do not rank it"}
    if not after < before:
        return {**out, "status": NOT_CONFIRMED,
                "reason": (f"{finding}: the refit does not lower the cross-fitted log loss ({before:.4f} -> "
                           f"{after:.4f}); the shipped calibration is kept")}
    combined = compose(site_map, map_for(desc.recalibration, mode, head, finding))
    source = f"site {site}: {n} studies"
    points = T.choose(shipped=(y, site_map(q)), stated_folds=None, check=None, prevalence=pos / n,
                      shipped_source=source, inner=parts,
                      stated_source=f"{source}, each part of {parts} flagged at the threshold from the other parts")
    default = T.default_name(mode)
    shipped_point = desc.operating_points.point(mode, finding, default) if desc.operating_points else None
    if shipped_point:  # what the shipped threshold gives at this site, for the before/after table
        shipped_here = T.Counts.of(y, q >= shipped_point["threshold"]).summary(pos / n)
        out["operating_point"] = {"name": default, "shipped_threshold_at_site": shipped_here,
                                  "adapted_cross_fitted": {k: points[default].get(k) for k in (
                                      "sensitivity", "sensitivity_ci", "specificity", "specificity_ci")}}
    return {**out, "status": ADAPTED, "reason": "", "site_map": site_map.to_dict(), "map": combined.to_dict(),
            "points": points}


def plan_adaptation(description, Y: np.ndarray, probs: dict, *, site: str, parts: int = PARTS,
                    n_boot: int = 1000) -> dict:
    """task -> finding -> plan, over the studies of each task with a known label."""
    desc = describe(description)
    plan = {}
    for task, P in probs.items():
        if task not in TASKS:
            continue
        mode, head = TASKS[task]
        rows = ~np.isnan(P).any(axis=1)
        plan[task] = {}
        for k, f in enumerate(desc.findings):
            if not desc.image_reliable.get(f):
                plan[task][f] = {"status": NOT_ASSESSED, "reason": f"{f}: not assessed in this task (the image "
                                 "cannot support it), so it has no map or operating point to adapt"}
                continue
            m = rows & ~np.isnan(Y[:, k])
            plan[task][f] = adapt_finding(Y[m, k], P[m, k], desc, mode=mode, head=head, finding=f, site=site,
                                          parts=parts, n_boot=n_boot)
    return plan


def refusals(plan: dict) -> list[str]:
    """One sentence per finding that was refused or not confirmed, for the outputs."""
    return [f"{task}: {e['reason']}" for task, per in plan.items() for e in per.values()
            if e["status"] in (REFUSED, NOT_CONFIRMED)]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (name or "site").lower()).strip("-")[:32] or "site"


def adapted_description(description, plan: dict, *, site: str, n_studies: int, labels: str,
                        source: str = "", when: str | None = None):
    """The shipped description with the adapted maps, thresholds and operating points, a new version and the
    provenance; AdaptError when nothing was adapted."""
    desc = describe(description)
    chosen = [(task, f, e) for task, per in plan.items() for f, e in per.items() if e["status"] == ADAPTED]
    if not chosen:
        raise AdaptError("no finding could be adapted: " + ("; ".join(refusals(plan)) or "none is assessed"))
    when = when or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    recal = desc.recalibration or Recalibration(method="platt", extra={"formula": "p' = sigmoid(a * logit(p) + b)"})
    maps = copy.deepcopy(recal.maps)
    ops = copy.deepcopy(desc.operating_points.to_dict()) if desc.operating_points else {
        "rule": T.RULE, "default": {m: T.default_name(m) for m in T.MODE_HEAD}, "choices": list(T.NAMES),
        "head": dict(T.MODE_HEAD), "points": {}}
    thresholds = copy.deepcopy(desc.thresholds) or {}
    for task, f, e in chosen:
        mode, head = TASKS[task]
        maps.setdefault(mode, {}).setdefault(head, {})[f] = PlattMap.from_dict(
            {**e["map"], "site": site, "site_map": e["site_map"]})
        ops.setdefault("points", {}).setdefault(mode, {})[f] = e["points"]
        old = thresholds.get(mode, {}).get(head, {}).get(f)
        if old is not None:
            thresholds[mode][head][f] = float(PlattMap.from_dict(e["site_map"])(old))
    summary = {"site": site, "studies": int(n_studies), "date": when, "labels": labels, "source": source,
               "shipped_version": desc.version, "shipped_sha256": desc.content_sha256, "parts": PARTS,
               "min_positives": MIN_POSITIVES,
               "adapted": {task: [f for t, f, _ in chosen if t == task] for task in plan},
               "refused": {task: {f: e["reason"] for f, e in per.items() if e["status"] in (REFUSED, NOT_CONFIRMED)}
                           for task, per in plan.items()},
               "rule": ("maps and operating points refitted on the site's studies where a finding has at least "
                        f"{MIN_POSITIVES} positives and the {PARTS}-part cross-fitted log loss improves; "
                        "everything else as shipped")}
    recal = replace(recal, maps=maps, extra={**recal.extra, "site": {"site": site, "studies": int(n_studies),
                                                                      "date": when}})
    ops["site"] = {"site": site, "studies": int(n_studies), "date": when}
    return desc.refitted(f"site-{slug(site)}-", strip="site-", stamp="%Y%m%d%H%M", when=when,
                         script="scripts/validate_site.py --adapt",
                         what=f"site calibration and operating points ({site})", recalibration=recal,
                         operating_points=ops, thresholds=thresholds or None, site_adaptation=summary)


def write_adapted(weights_dir: Path, out_dir: Path, new) -> Path:
    """A new weights folder: the shipped tensors and guard with the adapted description (and the int8
    calibration, made for the same image encoder). Refuses to write into the shipped folder or over weights."""
    weights_dir, out_dir = Path(weights_dir), Path(out_dir)
    if out_dir.resolve() == weights_dir.resolve():
        raise AdaptError(f"{out_dir} is the shipped weights folder; adapt into a new folder (--adapt OUTDIR)")
    if (out_dir / WEIGHTS_FILE).exists():
        raise AdaptError(f"{out_dir} already holds weights; adapt into a new, empty folder")
    from core.model.checkpoint import load_weights, save_weights
    model, _, _, ood = load_weights(weights_dir)
    save_weights(model, new, out_dir, ood=ood)
    if (weights_dir / INT8_FILE).is_file():
        shutil.copy2(weights_dir / INT8_FILE, out_dir / INT8_FILE)
    return out_dir


__all__ = ["ADAPTED", "NOT_ASSESSED", "NOT_CONFIRMED", "REFUSED", "AdaptError", "adapt_finding",
           "adapted_description", "compose", "log_loss", "needed", "plan_adaptation", "refusals",
           "write_adapted"]
