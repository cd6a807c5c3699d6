"""A single-study report: one prediction as a self-contained HTML page, fit for a research
record and for printing on one A4 page (the Predict page offers it as a download).

Everything is inline (the image as a data URI, the style in the page): the file opens offline,
anywhere, and asks no other host for anything. What the user typed is escaped.
"""
from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

from core.data.labels import FLAGGED, MODE_NAMES, NOT_ASSESSED, TextMode
from core.serving.decision import operating_point_words
from core.serving.prediction import Prediction

NOTICE = ("Not a medical device. Research and education only; not for diagnosis or treatment. The model was "
          "trained on one public collection (Indiana University, Open-I) and has not been validated elsewhere.")

_STYLE = """
@page { size: A4; margin: 14mm; }
body { font: 10.5pt/1.35 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #111; margin: 0; }
@media screen { body { max-width: 190mm; margin: 8mm auto; } }
h1 { font-size: 15pt; margin: 0 0 2mm; } h2 { font-size: 11.5pt; margin: 4mm 0 1.5mm; }
.notice { border: 1px solid #b45309; background: #fff7ed; padding: 2mm 3mm; font-size: 9pt; }
.warn { border: 1px solid #b91c1c; background: #fef2f2; padding: 2mm 3mm; }
.meta td { padding: 0 4mm 0 0; vertical-align: top; } .meta td:first-child { color: #555; white-space: nowrap; }
.images { display: flex; gap: 4mm; } .images figure { margin: 0; } .images img { width: 62mm; height: 62mm;
  object-fit: contain; background: #000; } figcaption { font-size: 8.5pt; color: #555; }
table.probs { border-collapse: collapse; width: 100%; font-size: 9.5pt; }
table.probs th, table.probs td { border-bottom: 1px solid #ddd; padding: 1mm 1.5mm; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } tr.above td.p { font-weight: 700; color: #b91c1c; }
.weak { color: #b45309; } .small { font-size: 8.5pt; color: #555; } .text { white-space: pre-wrap; font-size: 9pt; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _evidence(entry: dict | None) -> str:
    if not entry or entry.get("auc") is None:
        return "no held-out evidence"
    ci = entry.get("ci")
    text = (f"AUC {entry['auc']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            + f", {entry.get('positives', 0)} positives")
    test = entry.get("test") or {}
    if test.get("auc") is not None:  # the test split's, secondary: few positives
        text += f" (cross-validated; test split {test['auc']:.2f} on {test.get('positives', 0)} positives)"
    return text


def _rows(pred: Prediction) -> str:
    """One row per finding: the decision (core.serving.decision, made when predicted), the number a
    reader may see, what a flag means at the operating point, and the evidence."""
    out = []
    for f in pred.fusion:
        status = pred.decision.get(f, NOT_ASSESSED)
        if status == NOT_ASSESSED:
            out.append(f"<tr><td>{html.escape(f)}</td><td>not assessed</td><td class='num p'>—</td>"
                       f"<td class='weak' colspan='2'>{html.escape(pred.not_assessed.get(f, ''))}</td></tr>")
            continue
        # a finding too rare to calibrate is decided but shows no bare probability (docs/calibration.md)
        shown = pred.shown(f)
        number = f"{shown:.3f}" if shown is not None else "not calibrated"
        means = operating_point_words(pred.operating_point.get(f), f)
        out.append(
            f"<tr class='{'above' if status == FLAGGED else ''}'><td>{html.escape(f)}</td>"
            f"<td class='p'>{html.escape(status)}</td><td class='num p'>{number}</td>"
            f"<td class='small'>{html.escape(means)}</td><td>{html.escape(_evidence(pred.evidence.get(f)))}</td></tr>")
    return "\n".join(out)


def study_report_html(pred: Prediction, *, image_png: bytes, image_name: str, text_read: str = "",
                      overlay_png: bytes | None = None, overlay_caption: str = "",
                      created: datetime | None = None) -> str:
    """The report page. ``image_png``: the study as the log keeps it (core.data.images.thumbnail);
    ``overlay_png``: an attribution heatmap over it, when one was computed."""
    created = created or datetime.now(UTC)
    head = "image head" if pred.text_mode == TextMode.NONE else "fused"
    figures = [f"<figure><img src='{_data_uri(image_png)}' alt='the study'><figcaption>The study</figcaption>"
               "</figure>"]
    if overlay_png:
        figures.append(f"<figure><img src='{_data_uri(overlay_png)}' alt='attribution'>"
                       f"<figcaption>{html.escape(overlay_caption or 'Attribution')}</figcaption></figure>")
    ood = (f"<p class='warn'><b>Not assessed — out of distribution:</b> "
           f"{html.escape(pred.ood_reason or 'not a frontal chest X-ray')}.</p>" if pred.out_of_distribution else "")
    disc = (f"<p class='warn'><b>Discordance</b> (image and report disagree): "
            f"{html.escape(', '.join(pred.discordant))}</p>" if pred.discordant else "")
    text = (f"<h2>Text read ({html.escape(MODE_NAMES[pred.text_mode])})</h2><div class='text'>"
            f"{html.escape(text_read)}</div>" if pred.has_text and text_read else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CXR Fusion — {html.escape(image_name)}</title>
<style>{_STYLE}</style></head><body>
<h1>CXR Fusion — single-study research record</h1>
<p class="notice">{html.escape(NOTICE)}</p>
<table class="meta">
<tr><td>Study</td><td>{html.escape(image_name)}</td></tr>
<tr><td>Created (UTC)</td><td>{created.strftime('%Y-%m-%d %H:%M')}</td></tr>
<tr><td>Model</td><td>{html.escape(pred.model)}</td></tr>
<tr><td>Text mode</td><td>{html.escape(MODE_NAMES[pred.text_mode])}</td></tr>
<tr><td>Operating point</td><td>{html.escape(pred.operating_point_name or "—")}</td></tr>
</table>
{ood}<div class="images">{''.join(figures)}</div>
<h2>Findings: {html.escape(", ".join(pred.flagged()) or "none")} flagged at {html.escape(pred.operating_point_name
                                                                                       or "—")}</h2>
<table class="probs"><tr><th>Finding</th><th>Decision</th><th>Probability ({head})</th>
<th>What a flag means here</th><th>Held-out evidence ({html.escape(pred.text_mode)} mode, {head})</th></tr>
{_rows(pred)}
</table>
<p class="small">Evidence: the cross-validated out-of-fold AUC (3 models, 2,494 reports none of them saw), with its
95% bootstrap CI and the number of positives behind it; the test split's beside it has fewer positives. A finding
is assessed from the image only when its image-only AUC has a CI lower bound of at least 0.60 on at least 10
positives; an AUC on a handful of positives is not evidence.</p>
{disc}{text}
</body></html>
"""
