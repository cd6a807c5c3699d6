"""Draw one prediction: fused bars with thresholds, the per-head comparison, the
discordance and out-of-distribution warnings."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.charts import head_bars, probability_bars
from ui.tables import heads_table

_DISCORDANCE_MEANING = (
    "The image head disagrees **strongly** with what the report says: past an operating point chosen on "
    "validation so that about 4% of unedited reports are flagged, and only for findings the image "
    "supports. The report may miss a finding the image suggests, or state one the image does not "
    "support. The labels were coded from reports, so the text head is usually right about what the "
    "report *says*; the question is whether the report is right about the image. A score is how far "
    "past its operating point the image probability is (in logits); the history sorts by it.")


_DIRECTION = {"image_positive": "the image suggests it, the report does not say so",
              "image_negative": "the report says so, the image does not support it"}


def discordance(discordant: list[str], mode: str, *, image: dict | None = None, text: dict | None = None,
                head_thresholds: dict | None = None, details: list[dict] | None = None,
                head_calibrated: dict | None = None) -> None:
    """Prominent box listing the discordant findings; with per-head probabilities and
    thresholds it also says which head is above its threshold for each (without the number
    where ``head_calibrated`` says the head's probability is not calibrated)."""
    if not discordant:
        if mode == "report":
            st.success("No discordance: the image does not disagree strongly with the report on any finding "
                       "it supports.", icon=":material/check_circle:")
        return
    lines = ""
    if image and text and head_thresholds:
        def side(head: str, probs: dict, f: str) -> str:
            thr = head_thresholds[head][f]
            if not ((head_calibrated or {}).get(head) or {}).get(f, True):
                return f"{head} {'above' if probs[f] >= thr else 'below'} its threshold (not calibrated)"
            return f"{head} {probs[f]:.3f} {'≥' if probs[f] >= thr else '<'} {thr:.3f}"
        how = {d.get("finding"): d for d in details or []}

        def why(f: str) -> str:
            d = how.get(f)
            if not d:
                return ""
            return f" — {_DIRECTION.get(d.get('direction'), d.get('direction', ''))}; score {d.get('score', 0):.2f}"
        lines = "".join(f"- **{f}**: {side('image', image, f)} · {side('text', text, f)}{why(f)}\n"
                        for f in discordant) + "\n"
    st.warning(f"**Discordance — image and {mode} disagree on: {', '.join(discordant)}.**\n\n" + lines
               + _DISCORDANCE_MEANING, icon=":material/warning:")


def headline(pred) -> str:
    """'**Above threshold (fused):** …': the findings over their threshold, each one the image cannot
    support or whose probability is not calibrated marked as such (not listed as if it were evidence)."""
    def label(f: str) -> str:
        marks = ([] if pred.image_reliable.get(f, True) else ["not reliable from the image"]) + \
            ([] if pred.calibrated.get(f, True) else ["not calibrated"])
        return f + (f" *({'; '.join(marks)})*" if marks else "")
    positive = pred.positive("fusion")
    which = "image only" if pred.text_mode == "none" else "fused"
    return f"**Above threshold ({which}):** " + (", ".join(label(f) for f in positive) if positive else "none")


def out_of_distribution(flag: bool, score: float | None, reason: str = "") -> None:
    if flag:
        st.error("**This image does not look like the frontal chest X-rays the model was trained on**"
                 f"{' (' + reason + ')' if reason else ''}; OOD score {score or 0:.2f} (≥ 1 means outside). "
                 "The probabilities below are greyed out: they are not trustworthy for this image.",
                 icon=":material/block:")


def evidence_short(entry: dict | None) -> str:
    """'0.78 [0.62, 0.92], 25 pos.': one evidence entry in a table cell."""
    if not entry or not isinstance(entry.get("auc"), (int, float)):
        return "—"
    ci = entry.get("ci")
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return f"{entry['auc']:.2f}{interval}, {entry.get('positives', 0)} pos."


def evidence_line(entry: dict | None) -> str:
    """'AUC 0.67 (95% CI 0.45–0.88), 6 positives' from one evidence entry; '' without one."""
    if not entry:
        return ""
    auc, ci, n = entry.get("auc"), entry.get("ci"), entry.get("positives")
    text = f"held-out AUC {auc:.2f}" if isinstance(auc, (int, float)) else "no held-out AUC"
    if ci:
        text += f" (95% CI {ci[0]:.2f}–{ci[1]:.2f})"
    return text + (f", {n} positives" if n is not None else "")


def unreliable_findings(image_reliable: dict | None, evidence: dict | None) -> dict[str, str]:
    """finding -> evidence line, for the findings the image alone cannot be trusted on."""
    if not image_reliable:
        return {}
    return {f: evidence_line((evidence or {}).get(f)) for f, ok in image_reliable.items() if not ok}


def reliability_caption(unreliable: dict[str, str]) -> None:
    if unreliable:
        st.caption("**Not reliable from the image**: " + "; ".join(
            f"{f}" + (f" ({line})" if line else "") for f, line in unreliable.items())
            + ". A finding is reliable from the image only when its image-only held-out AUC has a 95% CI "
              "lower bound of at least 0.60 on at least 10 positives.")


NOT_CALIBRATED = "not calibrated"


def _shown(probs: dict, ok: dict | None) -> dict:
    """The probabilities that may be shown: those whose finding is calibrated (all without flags)."""
    return {f: v for f, v in probs.items() if (ok or {}).get(f, True)}


def not_calibrated_caption(hidden: list[str]) -> None:
    if hidden:
        st.caption(f"**{NOT_CALIBRATED.capitalize()}**: {', '.join(hidden)} — too few validation positives to "
                   "calibrate their probability (docs/calibration.md), so no number is shown; whether each is "
                   "above its decision threshold still is.")


def probabilities(fusion: dict, image: dict, text: dict | None, thresholds: dict, *,
                  head_thresholds: dict | None = None, discordant: list | None = None, key: str = "",
                  evidence: dict | None = None, image_reliable: dict | None = None, greyed: bool = False,
                  image_evidence: dict | None = None, calibrated: dict | None = None,
                  head_calibrated: dict | None = None, mode: str | None = None) -> None:
    """Fused bars on the left; image vs text heads and a table on the right. ``greyed`` draws
    them faded (an out-of-distribution image: shown, but not to be trusted). ``evidence`` is
    behind the fused numbers; ``image_evidence`` (image head) says why a finding is not
    reliable from the image. ``calibrated`` (fused) and ``head_calibrated`` (per head): finding ->
    whether its probability is recalibrated; one that is not is drawn as "not calibrated", no number.
    ``mode``: the text mode; image only (``none``) shows the one image number, report QA columns
    only in report mode."""
    image_only = mode == "none"
    unreliable = unreliable_findings(image_reliable, image_evidence or evidence)
    head_calibrated = head_calibrated or {}
    hidden = [f for f in fusion if not (calibrated or {}).get(f, True)]
    box = st.container(key=f"probs_{key}" + ("_greyed" if greyed else ""))
    if greyed:
        st.html(f"<style>.st-key-probs_{key}_greyed {{opacity: .45; filter: grayscale(1);}}</style>")
    with box:
        left, right = st.columns(2)
        with left:
            shown = _shown(fusion, calibrated)
            if shown:
                title = "Image-only probability" if image_only else "Fused probability"
                st.plotly_chart(probability_bars(shown, thresholds, unreliable=unreliable, title=title),
                                key=f"fused_{key}")
                st.caption(f"Bars: {title.lower()} (red = at or above the finding's decision threshold); "
                           "tick: the threshold, tuned on the validation split for this text mode.")
        with right:
            heads = {"image": image, **({"text": text} if text else {})}
            both = [f for f in fusion if all((head_calibrated.get(h) or {}).get(f, True) for h in heads)]
            if both and not image_only:  # image only: the image head is the number on the left
                st.plotly_chart(head_bars({h: {f: p[f] for f in both} for h, p in heads.items()},
                                          head_thresholds or {},
                                          fused_thresholds=thresholds), key=f"heads_{key}")
        report_qa = discordant if (mode == "report" if mode is not None else text) else None
        table = heads_table(fusion, image, text, thresholds, head_thresholds, report_qa)
        if image_only:  # one number: the image head's, under its own name
            table = table.drop(columns=[c for c in ("image head", "image thr.") if c in table])
            table = table.rename(columns={"fused": "image only", "fused ≥ threshold": "≥ threshold"})
        as_text = []
        for column, ok in (("fused", calibrated), ("image only", calibrated),
                           ("image head", head_calibrated.get("image")), ("text head", head_calibrated.get("text"))):
            if column in table and ok and not all(ok.get(f, True) for f in table.index):
                table[column] = [f"{v:.3f}" if ok.get(f, True) else NOT_CALIBRATED
                                 for f, v in zip(table.index, table[column], strict=True)]
                as_text.append(column)
        st.dataframe(table, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in ("fused", "image only", "threshold", "image head", "text head",
                                              "image thr.", "text thr.") if c not in as_text})
        if image_reliable:
            # one evidence per number, in its own table so no column is cut off: the shown number's
            # (its mode and head); "from the image" is always the image-only evidence's verdict
            held = pd.DataFrame(index=table.index)
            if not image_only and evidence:
                held[f"held-out AUC [95% CI] of the fused number ({mode or 'this mode'})"] = [
                    evidence_short(evidence.get(f)) for f in table.index]
            held["image-only AUC [95% CI]"] = [evidence_short((image_evidence or evidence or {}).get(f))
                                               for f in table.index]
            held["from the image"] = ["NOT reliable" if f in unreliable else "reliable" for f in table.index]
            st.dataframe(held, width="stretch")
        not_calibrated_caption(hidden)
        reliability_caption(unreliable)


def preload_chart_library() -> None:
    """An empty, hidden Plotly chart, drawn while the page waits for its first prediction: the
    browser fetches and compiles the chart library (~3.6 MB of JavaScript) now, while the user
    picks a file. Drawn on the first result instead, it added ~2 s before the probabilities
    showed (scripts/bench_ui.py, first prediction)."""
    import plotly.graph_objects as go
    st.html("<style>.st-key-chart_preload{display:none}</style>")
    with st.container(key="chart_preload"):
        st.plotly_chart(go.Figure(), key="chart_preload_figure", config={"staticPlot": True})
