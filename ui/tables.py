"""The tables the pages show (st.dataframe): a prediction's heads, the log's review table and
the model card's metrics. Column names, flags and number formats are wording for the screen;
the log row is core.serving.predict_and_log', the evaluation files are core.evaluation.eval_files'."""
from __future__ import annotations

import math

import pandas as pd

from core.evaluation.eval_files import HEAD_ORDER, MODE_ORDER, eval_name
from core.evaluation.operating_targets import NAMES
from core.store.export import row_findings
from ui.decision_view import cell, flagged_cell


def reviewed_by(row: dict) -> str:
    """Who set the entry's verdicts (core.store: the signed-in user, or "local"); "yes" for verdicts
    recorded without a name, "" when it has none."""
    verdicts = row.get("verdicts")
    if verdicts is None:
        return "yes" if row.get("reviewed") else ""
    names = sorted({v.get("reviewer") or "" for v in verdicts.values()})
    return ", ".join(n for n in names if n) or ("yes" if names else "")


def history_frame(rows: list[dict], decisions: list | None = None, decided_now: list[bool] | None = None
                  ) -> pd.DataFrame:
    """The review table: one row per logged prediction; what needs attention (what is flagged, out of
    distribution, discordance) comes before the numbers, so it is never off-screen. ``decisions``: each
    row's (ui.decision_view.from_row; None where it cannot be decided); ``decided_now``: rows logged before
    decisions were recorded. A finding shows the number of an assessed, calibrated decision only; a finding
    no row has a number for gets no column (no column of empty cells pushing the rest off-screen)."""
    findings = row_findings(rows)  # the five, then any a newer model added (core.model.description)
    decisions = decisions if decisions is not None else [None] * len(rows)
    decided_now = decided_now if decided_now is not None else [False] * len(rows)
    out = []
    for r, d, now in zip(rows, decisions, decided_now, strict=True):
        flags = (["⚠ out of distribution"] if r["out_of_distribution"] else []) + \
            (["discordant: " + ", ".join(r["discordant"])] if r["discordant"] else [])
        point = (d.operating_point + (" (decided now)" if now else "")) if d is not None else "not decided"
        row = {"id": r["id"], "created (UTC)": r["created_at"][:19].replace("T", " "),
               "flagged": flagged_cell(d) if d is not None else "—", "flags": " · ".join(flags),
               "file": r["image_name"], "mode": r["text_mode"], "operating point": point,
               # report QA exists in report mode only: elsewhere no score, not 0.00
               "discordance score": (r.get("discordance_score") or 0.0) if r["text_mode"] == "report" else None}
        row.update({f: (cell(d[f]) if d is not None and f in d.findings else None) for f in findings})
        row.update({"reviewed by": reviewed_by(r), "source": r["source"], "note": r.get("note", ""),
                    "note by": r.get("note_by") or ""})
        out.append(row)
    numbers = [f for f in findings if any(o[f] is not None for o in out)]
    # who reviewed it is part of what needs attention (an empty cell: nobody yet); a file name is a hash unless kept
    columns = ["id", "created (UTC)", "flagged", "flags", "reviewed by", "mode", "operating point",
               "discordance score", *numbers, "file", "source", "note", "note by"]
    if out and all(o["discordance score"] is None for o in out):  # no report-mode entry: no report QA
        columns.remove("discordance score")
    return pd.DataFrame(out, columns=columns)


# ---------------------------------------------------------------- model card (core.evaluation.eval_files)

MODE_TITLES = {"none": "Image only", "indication": "Image + indication", "report": "Image + report"}


def _rate(op: dict | None, key: str) -> str:
    if not op or op.get(key) is None:
        return "—"
    ci = op.get(f"{key}_ci")
    return f"{op[key]:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _order(name: str) -> int:
    return NAMES.index(name) if name in NAMES else len(NAMES)


def operating_points_table(block: dict, mode: str, findings) -> pd.DataFrame:
    """Every operating point of one text mode (the weights' ``operating_points``, core.evaluation.
    operating_targets): per finding and point the threshold, the stated sensitivity and specificity with
    95% CIs and their positives, the PPV at the prevalence, and the test split's check."""
    points = (block.get("points") or {}).get(mode) or {}
    default = (block.get("default") or {}).get(mode)
    rows = []
    for f in findings:
        for name, op in sorted((points.get(f) or {}).items(), key=lambda kv: _order(kv[0])):
            test = op.get("test") or {}
            rows.append({"finding": f, "operating point": name + (" (default)" if name == default else ""),
                         "threshold": f"{op['threshold']:.3f}" if op.get("threshold") is not None else "—",
                         "sensitivity [95% CI]": _rate(op, "sensitivity"),
                         "specificity [95% CI]": _rate(op, "specificity"),
                         "PPV": f"{op['ppv']:.2f}" if op.get("ppv") is not None else "—",
                         "positives / negatives": f"{op.get('positives', '?')} / {op.get('negatives', '?')}",
                         "test split: sensitivity / specificity (positives)": (
                             f"{test['sensitivity']:.2f} / {test['specificity']:.2f} ({test.get('positives')})"
                             if test.get("sensitivity") is not None and test.get("specificity") is not None
                             else "—"),
                         "measured on": op.get("source", "")})
    return pd.DataFrame(rows)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def fmt_ci(value, ci) -> str:
    """'0.84 (0.78–0.90)'; '—' when not computable (no positives in the split)."""
    if not _finite(value):
        return "—"
    lo, hi = (list(ci) + [None, None])[:2] if ci else (None, None)
    return f"{value:.2f} ({lo:.2f}–{hi:.2f})" if _finite(lo) and _finite(hi) else f"{value:.2f}"


def metrics_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per text mode × head: macro AUC and per-finding AUC with 95% CI. (No mean ECE: with
    findings at 1-10% prevalence it stays small whatever the top bins do; calibration_table shows
    calibration per finding.)"""
    rows = []
    for mode in MODE_ORDER:
        for head in HEAD_ORDER[mode]:
            r = results.get(eval_name("test", mode, head))
            if not r:
                continue
            row = {"text mode": mode, "head": head, "studies": r.get("n_studies"),
                   "macro AUC (95% CI)": fmt_ci(r.get("macro_auc"), r.get("macro_auc_ci"))}
            for f in r.get("auc") or {}:  # the evaluated model's findings
                row[f] = fmt_ci((r.get("auc") or {}).get(f), (r.get("auc_ci") or {}).get(f))
            rows.append(row)
    return pd.DataFrame(rows)


def summary_table(summary: dict) -> pd.DataFrame:
    """Fallback from metadata['test_summary'] ('mode/head' -> auc, macro_auc, macro_auc_ci)."""
    rows = []
    for key, s in summary.items():
        mode, _, head = key.partition("/")
        row = {"text mode": mode, "head": head, "macro AUC (95% CI)": fmt_ci(s.get("macro_auc"), s.get("macro_auc_ci"))}
        row.update({f: fmt_ci(auc, None) for f, auc in (s.get("auc") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def positives_table(results: dict[str, dict]) -> pd.DataFrame | None:
    """Positives per finding in the test split (the same for every mode and head)."""
    for r in results.values():
        if r.get("n_positive"):
            return pd.DataFrame([{"studies": r.get("n_studies"), **r["n_positive"]}])
    return None


def _top_bin(m: dict | None) -> str:
    """'119: 0.59 vs 0.31 (0.23–0.40)' (n: mean predicted vs observed, 95% CI); 'none ≥ 0.3' when empty."""
    if not m:
        return "—"
    tb = m.get("top_bin") or {}
    if not tb.get("n"):
        return f"none ≥ {tb.get('cut', 0.3):.1f}"
    lo, hi = tb.get("observed_ci") or (float("nan"), float("nan"))
    return f"{tb['n']}: {tb['mean_predicted']:.2f} vs {tb['observed']:.2f} ({lo:.2f}–{hi:.2f})"


def pooled_top_bin_table(block: dict | None) -> pd.DataFrame:
    """One row per task: every prediction >= 0.3 of the supported findings a user reads a number for,
    pooled (the issue's own measure), before and after the maps, and whether the observed rate is within
    25% of the mean prediction."""
    rows = []
    for task, (mode, head) in (("Image only", ("none", "image")), ("Image + indication", ("indication", "fusion"))):
        r = (block or {}).get(f"{mode}/{head}")
        if not r:
            continue
        after = r["after"]
        rows.append({"task": task, "before": _top_bin({"top_bin": r["before"]}),
                     "after": _top_bin({"top_bin": after}), "findings shown": ", ".join(after.get("findings") or []),
                     "within 25%": {True: "yes", False: "no", None: "—"}[after.get("within_tolerance")]})
    return pd.DataFrame(rows)


CALIBRATION_TOP_HELP = "top bin: predictions ≥ 0.3 — n: mean predicted vs observed rate (95% Wilson CI)"


def calibration_table(block: dict | None) -> pd.DataFrame:
    """One row per finding of one source (cross-validation or test) and task, from
    <weights>/eval/recalibration.json (scripts/recalibrate.py): positives, calibration slope with
    95% CI and intercept before and after the Platt map, and the top bin (predictions ≥ 0.3)
    before and after. A finding without a map says "not calibrated" instead of an "after"."""
    rows = []
    for f, r in (block or {}).items():
        before, after = r.get("before") or {}, r.get("after")
        i0, i1 = before.get("intercept"), (after or {}).get("intercept")
        intercept = f"{i0:.2f} → {i1:.2f}" if _finite(i0) and _finite(i1) else (f"{i0:.2f}" if _finite(i0) else "—")
        rows.append({
            "finding": f, "positives": f"{before.get('positives', '?')}/{before.get('n', '?')}",
            "slope before": fmt_ci(before.get("slope"), before.get("slope_ci")),
            "slope after": fmt_ci(after.get("slope"), after.get("slope_ci")) if after else "not calibrated",
            "intercept": intercept,
            "top bin before": _top_bin(before), "top bin after": _top_bin(after) if after else "—"})
    return pd.DataFrame(rows)
