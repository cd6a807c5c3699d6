"""The recalibration measurement as a reader reads it: the console tables and the Markdown tables of
docs/calibration.md (scripts/recalibrate.py prints and writes them; recalibration_protocol measures)."""
from __future__ import annotations

from core.data.findings import in_words
from core.evaluation.recalibration import TASKS


def _fmt(m: dict | None) -> str:
    if m is None:
        return "cannot be calibrated"
    ci = m["slope_ci"]
    tb = m["top_bin"]
    top = (f"top n={tb['n']} mean {tb['mean_predicted']:.2f} obs {tb['observed']:.2f} "
           f"[{tb['observed_ci'][0]:.2f}, {tb['observed_ci'][1]:.2f}]") if tb["n"] else "top n=0"
    slope = f"{m['slope']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    return f"slope {slope} int {m['intercept']:.2f}; {top}"


def print_tables(results: dict) -> None:
    for source, block in (("cross-validation, within-model", results["cv"]["within"]),
                          ("cross-validation, across models", results["cv"]["across"]),
                          (results["test_label"], results["test"])):
        for task, (mode, head) in TASKS.items():
            res = block.get(f"{mode}/{head}")
            if res is None:
                continue
            print(f"\n{source} — {task} ({mode}/{head})")
            for f, r in res.items():
                print(f"  {f:<14} positives {r['before']['positives']:>4}/{r['before']['n']:<5} "
                      f"before: {_fmt(r['before'])}")
                print(f"  {'':<14} {'':>16} after:  {_fmt(r['after'])}")


def _md_cell(m: dict | None, what: str) -> str:
    if m is None:
        return "cannot be calibrated" if what == "slope" else "—"
    if what == "slope":
        ci = m["slope_ci"]
        return f"{m['slope']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    tb = m["top_bin"]
    if not tb["n"]:
        return f"none ≥ {tb['cut']:.1f}"
    lo, hi = tb["observed_ci"]
    return f"{tb['n']}: {tb['mean_predicted']:.2f} vs {tb['observed']:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown_tables(results: dict) -> str:
    """The before/after tables of docs/calibration.md."""
    out = []
    for source, block in (("Cross-validation, within-model (the recipe)", results["cv"]["within"]),
                          (results["test_label"].capitalize(), results["test"]),
                          ("Cross-validation, across models (one map, other training runs)", results["cv"]["across"])):
        for task, (mode, head) in TASKS.items():
            res = block.get(f"{mode}/{head}")
            if res is None:
                continue
            out += [f"**{source} — {task}** (`{mode}` / `{head}`)", "",
                    "| Finding | positives / reports | slope before | slope after | intercept before → after | "
                    "top bin before (n: mean predicted vs observed [95% CI]) | top bin after |",
                    "|---|---|---|---|---|---|---|"]
            for f, r in res.items():
                b, a = r["before"], r["after"]
                inter = f"{b['intercept']:.2f} → " + (f"{a['intercept']:.2f}" if a else "—")
                out.append(f"| {f} | {b['positives']} / {b['n']} | {_md_cell(b, 'slope')} | {_md_cell(a, 'slope')} | "
                           f"{inter} | {_md_cell(b, 'top')} | {_md_cell(a, 'top')} |")
            out.append("")
    pooled = results.get("pooled_top_bin") or {}
    pool = results.get("supported") or []
    out += [f"**Pooled top bin** — every prediction ≥ 0.3 of {in_words(pool)} a user reads a "
            "number for (after: the calibrated ones; n: mean predicted vs observed [95% CI])", "",
            "| source | task | before | after (findings shown) | within 25% |", "|---|---|---|---|---|"]
    for source, name in (("cv_within", "cross-validation, within-model"), ("test", results["test_label"]),
                         ("cv_across", "cross-validation, across models")):
        for task, (mode, head) in TASKS.items():
            r = (pooled.get(source) or {}).get(f"{mode}/{head}")
            if r is None:
                continue
            b, a = r["before"], r["after"]
            within = {True: "**met**", False: "not met", None: "no prediction ≥ 0.3"}[a["within_tolerance"]]
            out.append(f"| {name} | {task} | {_md_top(b)} | {_md_top(a)} ({', '.join(a['findings'])}) | {within} |")
    out.append("")
    return "\n".join(out)


def _md_top(tb: dict) -> str:
    if not tb["n"]:
        return f"none ≥ {tb['cut']:.1f}"
    lo, hi = tb["observed_ci"]
    return f"{tb['n']}: {tb['mean_predicted']:.2f} vs {tb['observed']:.2f} [{lo:.2f}, {hi:.2f}]"
