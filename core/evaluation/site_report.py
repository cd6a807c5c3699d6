"""A site validation (core.evaluation.site_measure's result) as one self-contained, printable HTML page.

Everything is inline (style and SVG plots, core.evaluation.site_plots): the file opens offline and asks no
other host for anything. Every text that came from the site (its name, its table's name) is escaped. The
same words as the Site validation page: ``finding_rows`` gives both their table rows.
"""
from __future__ import annotations

import html
from datetime import UTC, datetime

from core.evaluation.site_plots import calibration_svg, roc_svg

NOTICE = ("Not a medical device. Research and education only. A site validation measures this model on the "
          "studies given, with the labels given; labels read from report text carry the reader's errors.")
LIMITS = ("What this cannot tell: labels taken from report text are a reader's, not a radiologist's, and noisy "
          "labels lower an AUC; a finding with few positives has a wide interval whatever its estimate; the "
          "numbers hold for this site's case mix and prevalence, not another's; adaptation changes the "
          "calibration and the thresholds, never the ranking (the AUC), and its numbers are cross-fitted on "
          "the same site, not measured on studies from later.")

_STYLE = """
@page { size: A4 landscape; margin: 12mm; }
body { font: 10pt/1.35 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #111; margin: 0; }
@media screen { body { max-width: 300mm; margin: 8mm auto; padding: 0 4mm; } }
h1 { font-size: 16pt; margin: 0 0 2mm; } h2 { font-size: 12pt; margin: 5mm 0 1.5mm; break-after: avoid; }
h3 { font-size: 10.5pt; margin: 3mm 0 1mm; }
.notice { border: 1px solid #b45309; background: #fff7ed; padding: 2mm 3mm; font-size: 9pt; }
.meta td { padding: 0 4mm 0 0; vertical-align: top; } .meta td:first-child { color: #555; white-space: nowrap; }
table.t { border-collapse: collapse; width: 100%; font-size: 8.3pt; break-inside: avoid; }
table.t th, table.t td { border-bottom: 1px solid #ddd; padding: 0.8mm 1.2mm; text-align: left; vertical-align: top; }
table.t th { background: #f3f4f6; } td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.worse { color: #b91c1c; font-weight: 600; } .better { color: #15803d; font-weight: 600; }
.few { color: #6b7280; } .mis { color: #b45309; font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 2mm; break-inside: avoid; }
.small { font-size: 8.5pt; color: #555; }
"""


def _e(x) -> str:
    return html.escape(str(x))


def num(x, nd=2) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def with_ci(x, ci, nd=2) -> str:
    if x is None:
        return "—"
    return f"{x:.{nd}f}" + (f" [{ci[0]:.{nd}f}, {ci[1]:.{nd}f}]" if ci else "")


def verdict_class(verdict: str | None) -> str:
    v = verdict or ""
    return ("worse" if v.startswith("worse") else "better" if v.startswith("better") else
            "few" if v.startswith("too few") else "mis" if v.startswith(("miscal", "differs")) else "")


def top_bin_words(cal: dict | None) -> str:
    tb = (cal or {}).get("top_bin") or {}
    if not tb.get("n"):
        return "none ≥ 0.3"
    ci = tb.get("observed_ci") or [0, 0]
    return f"{tb['n']}: {tb['mean_predicted']:.2f} vs {tb['observed']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


# the columns of finding_rows in three tables (the report and the page): every verdict fits the width of the
# page, printed or on screen
GROUPS = (("Discrimination: the site's AUC beside the shipped model's cross-validated one",
           ("positives", "AUC [95% CI]", "shipped AUC (cross-validated)", "verdict")),
          ("Calibration: is a probability right at this site?",
           ("calibration slope", "mean predicted vs observed", "top bin (n: predicted vs observed)", "calibration")),
          ("Flags at {point}: the site's sensitivity and specificity against what a flag states (in brackets)",
           ("sensitivity (stated)", "specificity (stated)", "operating point")))


def ood_words(ood: dict) -> str:
    """'7 of 641 images (1.1%, 95% CI 0.5–2.2%)'."""
    ci = ood.get("ci")
    tail = f", 95% CI {100 * ci[0]:.1f}–{100 * ci[1]:.1f}%)" if ci else ")"
    return (f"{ood.get('out_of_distribution', 0)} of {ood.get('images', 0)} images "
            f"({100 * (ood.get('rate') or 0):.1f}%" + tail)


def finding_rows(task: dict) -> list[dict]:
    """One row per finding of a task, as both the report and the page show it (strings)."""
    rows = []
    for f, e in task["findings"].items():
        cal = e.get("calibration") or {}
        cv = e.get("calibration_verdict") or {}
        op = e.get("operating_point_verdict") or {}
        rows.append({
            "finding": f + ("" if e.get("assessed") else " (not assessed)"),
            "positives": f"{e['positives']} / {e['n']}",
            "AUC [95% CI]": with_ci(e.get("auc"), e.get("auc_ci")),
            "shipped AUC (cross-validated)": with_ci(e.get("shipped_auc"), e.get("shipped_auc_ci")),
            "verdict": e.get("verdict") or "—",
            "calibration slope": with_ci(e.get("calibration_slope"), cal.get("slope_ci")),
            "mean predicted vs observed": (f"{cal['mean_predicted']:.3f} vs {cal['observed']:.3f}"
                                           if cal.get("mean_predicted") is not None else "—"),
            "top bin (n: predicted vs observed)": top_bin_words(cal) if cal else "—",
            "calibration": cv.get("verdict") or "—",
            "sensitivity (stated)": (f"{with_ci(e.get('sensitivity'), e.get('sensitivity_ci'))} "
                                      f"({num(e.get('shipped_sensitivity'))})" if e.get("sensitivity") is not None
                                      else "—"),
            "specificity (stated)": (f"{with_ci(e.get('specificity'), e.get('specificity_ci'))} "
                                      f"({num(e.get('shipped_specificity'))})" if e.get("specificity") is not None
                                      else "—"),
            "operating point": op.get("verdict") or "—",
        })
    return rows


def _table(rows: list[dict], classes: dict[str, callable] | None = None) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            value = r.get(c, "")
            cls = (classes or {}).get(c, lambda _v: "")(value)
            cells.append(f"<td class='num {cls}'>{_e(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='t'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def reasons(task: dict) -> list[str]:
    """The reasons behind each miscalibration and operating-point verdict of a task, one line each."""
    out = []
    for f, e in task["findings"].items():
        for key in ("calibration_verdict", "operating_point_verdict"):
            for why in (e.get(key) or {}).get("reasons") or []:
                if not why.endswith("fewer than 10)"):
                    out.append(f"{f}: {why}")
        if e.get("needed") and e["needed"].get("studies"):
            n = e["needed"]
            out.append(f"{f}: {e['positives']} positives; an AUC to ±{n['ci_half_width']:.2f} needs about "
                       f"{n['positives']} positives (≈ {n['studies']:,} studies at this site's prevalence)")
    return out


def adaptation_rows(adaptation: dict) -> list[dict]:
    rows = []
    for task, per in (adaptation.get("plan") or {}).items():
        for f, e in per.items():
            if e.get("status") == "not assessed":
                continue
            cf = e.get("cross_fitted") or {}
            b, a = cf.get("before") or {}, cf.get("after") or {}
            op = e.get("operating_point") or {}
            sh, ad = op.get("shipped_threshold_at_site") or {}, op.get("adapted_cross_fitted") or {}
            rows.append({
                "task": task, "finding": f, "status": e["status"], "positives": f"{e['positives']} / {e['n']}",
                "slope before → after": (f"{num(b.get('slope'))} → {num(a.get('slope'))}" if a else "—"),
                "mean predicted before → after, vs observed": (
                    f"{num(b.get('mean_predicted'), 3)} → {num(a.get('mean_predicted'), 3)} vs "
                    f"{num(b.get('observed'), 3)}" if a else "—"),
                "log loss before → after": (f"{num(cf.get('log_loss_before'), 4)} → {num(cf.get('log_loss_after'), 4)}"
                                            if cf else "—"),
                "default point: specificity, shipped threshold → adapted": (
                    f"{op['name']}: {num(sh.get('specificity'))} → {num(ad.get('specificity'))}" if op else "—"),
                "sensitivity, shipped threshold → adapted": (
                    f"{num(sh.get('sensitivity'))} → {num(ad.get('sensitivity'))}" if op else "—"),
            })
    return rows


def site_report_html(result: dict, *, created: datetime | None = None) -> str:
    """The report page of one validation result (and its adaptation, when there was one)."""
    created = created or datetime.now(UTC)
    ood = result.get("out_of_distribution") or {}
    meta = [("Site", result.get("site") or "—"), ("Model", result.get("model") or "?"),
            ("Studies", f"{result['n_studies']:,} ({ood.get('images', '?')} images)"),
            ("Labels", {"columns": "the site's own label columns", "report": "read from the report text "
                        "(core.evaluation.keyword_baseline)"}.get(result.get("labels"), result.get("labels"))),
            ("Operating point", result.get("operating_point")),
            ("Out of distribution (the guard)", ood_words(ood)),
            ("Written", created.strftime("%Y-%m-%d %H:%M UTC"))]
    parts = [f"<h1>Site validation — {_e(result.get('site') or 'site')}</h1>", f"<p class='notice'>{_e(NOTICE)}</p>",
             "<table class='meta'>" + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta)
             + "</table>"]
    verdicts = {"verdict": verdict_class, "calibration": verdict_class, "operating point": verdict_class}
    for key, task in (result.get("tasks") or {}).items():
        parts.append(f"<h2>{_e(task['task'].capitalize())} ({_e(key)}): {task['n_studies']:,} studies, flags at "
                     f"{_e(task['operating_point'])}</h2>")
        rows = finding_rows(task)
        for title, columns in GROUPS:
            parts.append(f"<h3>{_e(title.format(point=task['operating_point']))}</h3>")
            parts.append(_table([{c: r[c] for c in ("finding", *columns)} for r in rows], verdicts))
        why = reasons(task)
        if why:
            parts.append("<ul class='small'>" + "".join(f"<li>{_e(w)}</li>" for w in why) + "</ul>")
        parts.append("<h3>ROC curves (site; the shipped cross-validated AUC in grey)</h3><div class='plots'>"
                     + "".join(roc_svg(f, e) for f, e in task["findings"].items()) + "</div>")
        parts.append("<h3>Calibration (observed against predicted; the dashed line is calibrated)</h3>"
                     "<div class='plots'>" + "".join(calibration_svg(f, e) for f, e in task["findings"].items()
                                                     if e.get("assessed")) + "</div>")
    agree = (result.get("label_agreement") or {}).get("findings")
    if agree:
        parts.append("<h2>The report reader against the site's labels</h2>")
        parts.append(_table([{"finding": f, "studies": a["n"], "positives": a["positives"],
                              "reader sensitivity": with_ci(a.get("sensitivity"), a.get("sensitivity_ci")),
                              "reader specificity": with_ci(a.get("specificity"), a.get("specificity_ci")),
                              "agreement": num(a.get("agreement"), 3), "kappa": num(a.get("kappa"), 3)}
                             for f, a in agree.items()]))
    adaptation = result.get("adaptation")
    if adaptation:
        parts.append(f"<h2>Site adaptation: {_e(adaptation.get('version') or 'not written')}</h2>")
        parts.append(f"<p class='small'>{_e(adaptation.get('summary', ''))}</p>")
        parts.append(_table(adaptation_rows(adaptation)))
        if adaptation.get("refused"):
            parts.append("<ul class='small'>" + "".join(f"<li>not adapted: {_e(w)}</li>" for w in adaptation["refused"])
                         + "</ul>")
    parts.append(f"<p class='small'>{_e(LIMITS)}</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Site validation — "
            f"{_e(result.get('site') or 'site')}</title><style>{_STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
