"""The site report's plots as inline SVG: an ROC curve and a reliability diagram per finding.

Plain strings, no plotting library: the HTML report (core.evaluation.site_report) and the Site validation
page embed the same figures, they print sharp at any size and open offline.
"""
from __future__ import annotations

import html

W, H, PAD = 190, 175, 30          # one panel, in SVG user units
SITE, SHIPPED, GRID = "#1d4ed8", "#9ca3af", "#e5e7eb"


def _tick(v: float) -> str:
    return "0" if v == 0 else f"{v:.2f}".rstrip("0").rstrip(".")


def _xy(x: float, y: float, top: float = 1.0) -> tuple[float, float]:
    return PAD + x / top * (W - PAD - 8), H - PAD - y / top * (H - PAD - 18)


def _frame(title: str, xlabel: str, ylabel: str, top: float = 1.0) -> list[str]:
    out = [f"<text x='{W / 2}' y='12' text-anchor='middle' font-size='11' font-weight='600'>"
           f"{html.escape(title)}</text>"]
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x0, y0 = _xy(t * top, 0, top)
        x1, y1 = _xy(0, t * top, top)
        out += [f"<line x1='{x0:.1f}' y1='{_xy(0, 0, top)[1]:.1f}' x2='{x0:.1f}' y2='{_xy(0, top, top)[1]:.1f}' "
                f"stroke='{GRID}'/>",
                f"<line x1='{_xy(0, 0, top)[0]:.1f}' y1='{y1:.1f}' x2='{_xy(top, 0, top)[0]:.1f}' y2='{y1:.1f}' "
                f"stroke='{GRID}'/>",
                f"<text x='{x0:.1f}' y='{H - PAD + 11}' text-anchor='middle' font-size='8'>{_tick(t * top)}</text>",
                f"<text x='{PAD - 3}' y='{y1 + 3:.1f}' text-anchor='end' font-size='8'>{_tick(t * top)}</text>"]
    out += [f"<text x='{W / 2 + PAD / 2}' y='{H - 4}' text-anchor='middle' font-size='9'>{html.escape(xlabel)}</text>",
            f"<text x='9' y='{H / 2}' text-anchor='middle' font-size='9' transform='rotate(-90 9 {H / 2})'>"
            f"{html.escape(ylabel)}</text>"]
    a, b = _xy(0, 0, top), _xy(top, top, top)
    out.append(f"<line x1='{a[0]:.1f}' y1='{a[1]:.1f}' x2='{b[0]:.1f}' y2='{b[1]:.1f}' stroke='{SHIPPED}' "
               "stroke-dasharray='3 3'/>")
    return out


def _svg(parts: list[str], label: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {H}' width='{W}' height='{H}' role='img' "
            f"aria-label='{html.escape(label)}' font-family='Helvetica, Arial, sans-serif'>" + "".join(parts)
            + "</svg>")


def roc_svg(finding: str, entry: dict) -> str:
    """The site's ROC curve of one finding, its AUC and the shipped cross-validated AUC."""
    parts = _frame(finding, "1 - specificity", "sensitivity")
    roc = (entry.get("curves") or {}).get("roc")
    if roc:
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (_xy(a, b) for a, b in roc))
        parts.append(f"<polyline points='{pts}' fill='none' stroke='{SITE}' stroke-width='1.8'/>")
    auc, ship = entry.get("auc"), entry.get("shipped_auc")
    text = f"site {auc:.2f}" if auc is not None else "site: one class only"
    parts.append(f"<text x='{W - 10}' y='{H - PAD - 18}' text-anchor='end' font-size='9' fill='{SITE}'>"
                 f"{html.escape(text)} ({entry.get('positives', 0)} pos.)</text>")
    if ship is not None:
        parts.append(f"<text x='{W - 10}' y='{H - PAD - 7}' text-anchor='end' font-size='9' fill='#4b5563'>"
                     f"shipped {ship:.2f} (cross-validated)</text>")
    return _svg(parts, f"ROC curve, {finding}")


def calibration_svg(finding: str, entry: dict) -> str:
    """Observed rate against mean prediction over equal-count bins (dot area: studies), the diagonal is
    calibrated; the axes stop at the largest value shown (rare findings sit near 0)."""
    bins = (entry.get("curves") or {}).get("calibration") or []
    top = max([0.1, *[max(p, o) for p, o, _ in bins if p is not None and o is not None]])
    top = min(1.0, round(top * 1.15 + 0.005, 2))
    parts = _frame(finding, "mean predicted", "observed", top)
    n_max = max([n for _, _, n in bins] or [1])
    for p, o, n in bins:
        if p is None or o is None:
            continue
        x, y = _xy(min(p, top), min(o, top), top)
        parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{2 + 3 * (n / n_max) ** 0.5:.1f}' fill='{SITE}' "
                     "fill-opacity='0.75'/>")
    slope = entry.get("calibration_slope")
    if slope is not None:
        parts.append(f"<text x='{PAD + 4}' y='24' font-size='9' fill='{SITE}'>slope {slope:.2f}</text>")
    return _svg(parts, f"Calibration, {finding}")
