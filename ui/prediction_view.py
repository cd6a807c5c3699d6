"""Draw one prediction: its decisions at their operating point (what is flagged, what a flag means,
what was not assessed and why), the numbers behind them, the held-out evidence, and the discordance
and out-of-distribution warnings. The decisions are core.serving.decision's (ui.decision_view)."""
from __future__ import annotations

import streamlit as st

from core.data.labels import Head, TextMode
from ui import decision_view
from ui.charts import head_bars, probability_bars
from ui.decision_view import mode_words

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
        if mode == TextMode.REPORT:
            st.success("No discordance: the image does not disagree strongly with the report on any finding "
                       "it supports.", icon=":material/check_circle:")
        return
    lines = ""
    if image and text and head_thresholds:
        how = {d.get("finding"): d for d in details or []}

        def side(head: str, probs: dict, f: str) -> str:
            # the image against the report-QA point it passed (not the image head's own threshold: that
            # decides nothing here); the text against the reading of "the report says it"
            d = how.get(f) or {}
            thr = d.get("margin") if head == Head.IMAGE and d.get("margin") is not None else head_thresholds[head][f]
            what = "its report-QA point" if head == Head.IMAGE and d.get("margin") is not None else (
                "the report says it" if probs[f] >= thr else "the report does not say it")
            if not ((head_calibrated or {}).get(head) or {}).get(f, False):
                return f"{head} {'above' if probs[f] >= thr else 'below'} {what} (not calibrated)"
            return f"{head} {probs[f]:.3f} {'≥' if probs[f] >= thr else '<'} {thr:.3f} ({what})"

        def why(f: str) -> str:
            d = how.get(f)
            if not d:
                return ""
            return f" — {_DIRECTION.get(d.get('direction'), d.get('direction', ''))}; score {d.get('score', 0):.2f}"
        lines = "".join(f"- **{f}**: {side('image', image, f)} · {side('text', text, f)}{why(f)}\n"
                        for f in discordant) + "\n"
    st.warning(f"**Discordance — image and {mode} disagree on: {', '.join(discordant)}.**\n\n" + lines
               + _DISCORDANCE_MEANING, icon=":material/warning:")


def out_of_distribution(flag: bool, score: float | None, reason: str = "") -> None:
    if flag:
        st.error("**This image does not look like the frontal chest X-rays the model was trained on**"
                 f"{' (' + reason + ')' if reason else ''}; OOD score {score or 0:.2f} (≥ 1 means outside). "
                 "No finding is assessed: no probability and no flag is shown for this image.",
                 icon=":material/block:")


def evidence_line(entry: dict | None) -> str:
    """'cross-validated AUC 0.51 (95% CI 0.40–0.63), 23 positives' from one evidence entry (the headline:
    core.evaluation.evidence); '' without one."""
    if not entry:
        return ""
    auc, ci, n = entry.get("auc"), entry.get("ci"), entry.get("positives")
    kind = "cross-validated" if str(entry.get("source") or "").startswith("cross-validation") else "held-out"
    text = f"{kind} AUC {auc:.2f}" if isinstance(auc, (int, float)) else "no held-out AUC"
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


def not_calibrated_caption(hidden: list[str]) -> None:
    if hidden:
        st.caption(f"**{NOT_CALIBRATED.capitalize()}**: {', '.join(hidden)} — too few held-out positives to fit "
                   "a calibration map (docs/calibration.md), so no number is shown; whether each is flagged still is.")


RESULT_MARKER = "predict_shown"  # scripts/bench_ui.py waits for it: st-key-predict_shown_<result>_<bars>


def result_marker(result_key, bars: int) -> str:
    """The key of the container around one result's decisions: the result it belongs to and how many
    bars its chart draws, so a browser (scripts/bench_ui.py) can tell this result's numbers are drawn."""
    return f"{RESULT_MARKER}_{result_key}_{bars}"


def decisions_headline(decisions) -> None:
    """What a reader reads first: what is flagged at which operating point, what each flag means in words
    and numbers, and what was not assessed and why."""
    st.markdown(decision_view.headline(decisions))
    meanings = decision_view.flag_meanings(decisions)
    if meanings:
        st.markdown("**What a flag means here**\n\n" + "\n".join(f"- {m}" for m in meanings))
    for line in decision_view.not_assessed_lines(decisions):
        st.markdown(line)


def show_decisions(decisions, *, key: str, evidence: dict | None, image_evidence: dict | None,
                   image_reliable: dict | None, heads: dict | None = None, head_calibrated: dict | None = None
                   ) -> None:
    """The numbers behind the decisions: the calibrated probability of each assessed finding against its
    operating point's threshold (red = flagged), the image and text heads beside them (text modes), one
    table of decisions and what a flag means, one of held-out evidence. A finding not assessed shows no
    number and no flag; one not calibrated is decided and shows no number."""
    mode = decisions.mode
    probs, thresholds, flagged = decision_view.flagged_for_chart(decisions)
    unreliable = unreliable_findings(image_reliable, image_evidence or evidence)
    hidden = [d.finding for d in decisions if d.assessed and d.probability is None]
    left, right = st.columns(2)
    with left:
        if probs:
            title = f"{'Image-only' if mode == 'none' else 'Fused'} probability at {decisions.operating_point}"
            st.plotly_chart(probability_bars(probs, thresholds, title=title, flagged=flagged), key=f"fused_{key}")
            st.caption("Bars: the calibrated probability of each assessed finding (red = flagged); tick: the "
                       f"threshold of the operating point ({decisions.operating_point}, {mode_words(mode)}).")
    with right:
        shown_heads = {h: {f: p[f] for f in probs if ((head_calibrated or {}).get(h) or {}).get(f, False)}
                       for h, p in (heads or {}).items()}
        both = [f for f in probs if all(f in p for p in shown_heads.values())]
        if mode != TextMode.NONE and both and shown_heads:
            st.plotly_chart(head_bars({h: {f: p[f] for f in both} for h, p in shown_heads.items()}, {}),
                            key=f"heads_{key}")
            st.caption("Each head's own calibrated number, for comparison; the decision is on the fused number.")
    st.dataframe(decision_view.decision_table(decisions), width="stretch")
    st.caption(f"Decisions at **{decisions.operating_point}** ({mode_words(mode)}). Sensitivity: the share of "
               "studies with the finding that are flagged; specificity: the share without it that are not; PPV: "
               "the share of flags that are true at the collection's prevalence. '—': not assessed (no number, "
               "no flag).")
    st.dataframe(decision_view.evidence_table(list(decisions.findings), evidence, image_evidence, image_reliable,
                                              mode), width="stretch")
    st.caption(decision_view.evidence_caption(evidence))
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
