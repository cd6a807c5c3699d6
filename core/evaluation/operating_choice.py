"""Choosing the operating points the weights carry (scripts/choose_operating_points.py runs it; no model run):
from the shipped model's raw validation and test predictions (through its recalibration) and the recipe's
out-of-fold predictions, per text mode and assessed finding and each target of ``operating_targets.TARGETS``,
the shipped threshold, the stated sensitivity and specificity (CIs) and PPV, the test split's check, how
often studies with none of the findings are flagged, and report QA's reading of "the report says it"."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from core.data.labels import Head, TextMode
from core.evaluation import operating_targets as T
from core.evaluation.cross_validation import read_predictions_csv
from core.evaluation.cv_layout import oof_key, oof_path
from core.evaluation.eval_files import RECALIBRATION_INPUTS, EvalFilesError
from core.evaluation.metrics import wilson_ci
from core.evaluation.recalibration import apply_maps

SCRIPT = "scripts/choose_operating_points.py"


def _read(path: Path):
    if not path.is_file():
        raise EvalFilesError(f"missing {path}: run scripts/recalibrate.py (the raw predictions) or scripts/cv.py first")
    return read_predictions_csv(path)


def normal_flag_rate(Y, flags) -> dict:
    """Share of studies with none of the findings (rows of ``Y`` all 0) that carry a flag, with its Wilson CI."""
    normal = Y.sum(axis=1) == 0
    k, n = int(flags[normal].sum()), int(normal.sum())
    return {"rate": round(k / n, 4) if n else None, "ci": wilson_ci(k, n), "flagged": k, "n": n}


def flags_at(P, thresholds: dict, findings):
    """Whether each study carries at least one flag at these per-finding thresholds."""
    out = np.zeros(len(P), bool)
    for f, t in thresholds.items():
        out |= P[:, findings.index(f)] >= t
    return out


def cross_fitted_normal_rate(models, assessed, findings, target: str, *, inner: int) -> dict:
    """normal_flag_rate over models' held-out (Y, P), each half flagged at its model's thresholds from
    the other half (as the stated sensitivity and specificity are measured)."""
    ys, flags = [], []
    for i, (Y, P) in enumerate(models):
        part = T.stratified_parts((Y.sum(axis=1) > 0).astype(int), inner, i)
        thr = np.zeros((len(Y), len(findings)))
        for s in range(inner):
            fit, held = part != s, part == s
            for f in assessed:
                k = findings.index(f)
                thr[held, k] = T.threshold_for(Y[fit, k], P[fit, k], *T.split_name(target))
        flag = np.zeros(len(Y), bool)
        for f in assessed:
            k = findings.index(f)
            flag |= P[:, k] >= thr[:, k]
        ys.append(Y)
        flags.append(flag)
    Y, flag = np.concatenate(ys), np.concatenate(flags)
    return normal_flag_rate(Y, flag)


def choose(weights: Path, desc, fold_dirs: list[Path], *, inner: int = 2) -> tuple[dict, dict, dict]:
    """(the operating-points block, report QA's text thresholds, its refitted discordance block)."""
    findings = list(desc.findings)
    reliable = desc.image_reliable
    points: dict = {}
    rates: dict = {}
    for mode, head in T.MODE_HEAD.items():
        val = _read(weights / "eval" / RECALIBRATION_INPUTS / f"val_{mode}_{head}.csv")
        test = _read(weights / "eval" / RECALIBRATION_INPUTS / f"test_{mode}_{head}.csv")
        Pv, Pt = (apply_maps(desc.recalibration, mode, head, P, findings) for P in (val[1], test[1]))
        Yv, Yt = val[2], test[2]
        folds = [_read(oof_path(d, oof_key(mode, head))) for d in fold_dirs]
        cv_y = np.concatenate([f[2] for f in folds])
        prevalence = np.concatenate([cv_y, Yt]).mean(axis=0)  # the whole collection: train+val (CV) and test
        n_cv = len(cv_y)
        assessed = T.assessed_findings(mode, findings, reliable)
        shipped_y, shipped_p = np.concatenate([Yv, Yt]), np.concatenate([Pv, Pt])
        shipped_source = f"the shipped model's validation + test reports ({len(shipped_y)})"
        # the recipe's folds never fine-tune the text encoder: with the report they describe another
        # reader than the shipped one, so report mode states the shipped model's own cross-fitted numbers
        stated = None if mode == TextMode.REPORT else [(fy, fp) for _, fp, fy in folds]
        stated_source = (f"cross-validation: {n_cv} reports held out from {len(folds)} models, each flagged at its "
                         "model's threshold from its other reports") if stated else \
            f"{shipped_source}, each half flagged at the threshold from the other half"
        points[mode] = {}
        for f in assessed:
            k = findings.index(f)
            points[mode][f] = T.choose(
                shipped=(shipped_y[:, k], shipped_p[:, k]),
                stated_folds=[(fy[:, k], fp[:, k]) for fy, fp in stated] if stated else None,
                check=((Yv[:, k], Pv[:, k]), (Yt[:, k], Pt[:, k])), prevalence=float(prevalence[k]),
                shipped_source=shipped_source, stated_source=stated_source, inner=inner)
        default = T.default_name(mode)
        rates[mode] = {
            "stated": cross_fitted_normal_rate(stated or [(shipped_y, shipped_p)], assessed, findings, default,
                                               inner=inner),
            "test": normal_flag_rate(Yt, flags_at(Pt, {f: points[mode][f][default]["test"]["threshold"]
                                                       for f in assessed}, findings))}
    block = {"rule": T.RULE, "default": {m: T.default_name(m) for m in T.MODE_HEAD}, "choices": list(T.NAMES),
             "head": T.MODE_HEAD,
             # the labels are the same in every mode: the last mode's collection prevalence is every mode's
             "prevalence": {f: round(float(v), 4) for f, v in zip(findings, prevalence, strict=True)},
             "points": points, "normal_flag_rate": rates,
             "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "script": SCRIPT}
    # report QA reads "the report says it" from the text head: at the report's default target too, so a
    # report that rules a finding out is not read as saying it; its discordance points refitted to match
    text_thr, qa = report_qa_points(weights, desc, findings)
    block["report_qa"] = {"text_thresholds": text_thr, "rule": f"text head at {T.default_name('report')} on "
                          "validation; discordance points refitted on validation (core.evaluation.operating_points)",
                          "val_flag_rate": qa["val_flag_rate"]}
    return block, text_thr, qa


def report_qa_points(weights: Path, desc, findings) -> tuple[dict, dict]:
    """(finding -> the text head's report-mode threshold at the report's default target, on validation;
    the discordance block refitted with it), from the raw validation predictions through the maps."""
    from core.evaluation.operating_points import fit_discordance
    probs = {}
    for head in (Head.IMAGE, Head.TEXT):
        _, P, Y = _read(weights / "eval" / RECALIBRATION_INPUTS / f"val_report_{head}.csv")
        probs[head] = apply_maps(desc.recalibration, "report", head, P, findings)
    kind, value = T.split_name(T.default_name("report"))
    text_thr = {f: T.threshold_for(Y[:, k], probs["text"][:, k], kind, value) for k, f in enumerate(findings)}
    supported = desc.supported
    block = fit_discordance(probs["image"], probs["text"], Y, np.array([text_thr[f] for f in findings]), findings,
                            supported, budget=desc.discordance.budget if desc.discordance else 0.04)
    block["supported"] = supported
    return text_thr, block


def negation_flags(data: Path, weights: Path, desc, report_points: dict | None, *,
                   text_thresholds: dict | None = None) -> dict:
    """Target name -> finding -> how many test reports that explicitly rule the finding out (and whose
    label agrees) the report-mode decision flags for it (core.evaluation.keyword_baseline.rules_out).
    With ``text_thresholds``: how many the text head reads as saying it (what report QA's "the report
    says it" rests on), under the name "text head"."""
    from core.data.sources import load_collection
    from core.evaluation.keyword_baseline import rules_out
    findings = list(desc.findings)
    head = "text" if text_thresholds else "fusion"
    uids, P, Y = _read(weights / "eval" / RECALIBRATION_INPUTS / f"test_report_{head}.csv")
    P = apply_maps(desc.recalibration, "report", head, P, findings)
    if text_thresholds:
        report_points = {f: {"text head": {"threshold": t}} for f, t in text_thresholds.items()}
    reports = {r.uid: r for r in load_collection((desc.data or {}).get("dataset", "openi"), data).reports}
    texts = [reports[u].text("report") for u in uids]
    out = {}
    for name in next(iter(report_points.values())):
        per, k_all, n_all = {}, 0, 0
        for k, f in enumerate(findings):
            ruled = np.array([rules_out(t, f) for t in texts]) & (Y[:, k] == 0)
            flagged = int((P[ruled, k] >= report_points[f][name]["threshold"]).sum())
            per[f] = {"flagged": flagged, "n": int(ruled.sum()), "rate": round(flagged / ruled.sum(), 4) if ruled.any()
                      else None}
            k_all, n_all = k_all + flagged, n_all + int(ruled.sum())
        out[name] = {"findings": per, "overall": {"flagged": k_all, "n": n_all, "rate": round(k_all / n_all, 4),
                                                  "ci": wilson_ci(k_all, n_all)}}
    return out
