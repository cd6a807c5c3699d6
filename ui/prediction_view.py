"""Draw one prediction: fused bars with thresholds, the per-head comparison, the
discordance and out-of-distribution warnings."""
from __future__ import annotations

import streamlit as st

from ui.charts import head_bars, probability_bars
from ui.records import heads_table

_DISCORDANCE_MEANING = {
    "report": ("The image head and the text head fall on opposite sides of their thresholds. "
               "For **report QA** this is the signal worth a second look: the report may miss a "
               "finding the image suggests (image above, text below), or describe one the image "
               "does not support (text above, image below). The labels were coded from reports, so "
               "the text head is usually right about what the report *says*; the question is "
               "whether the report is right about the image."),
    "indication": ("The image head and the text head fall on opposite sides of their thresholds. "
                   "An indication rarely names the finding, so here this mostly means the image "
                   "suggests something the reason for the study did not anticipate (or the reverse) — "
                   "worth attention before the read, not evidence of an error."),
}


def discordance(discordant: list[str], mode: str, *, image: dict | None = None, text: dict | None = None,
                head_thresholds: dict | None = None) -> None:
    """Prominent box listing the discordant findings; with per-head probabilities and
    thresholds it also says which head is above its threshold for each."""
    if not discordant:
        if mode != "none":
            st.success("Image and text heads agree on every finding (no discordance).", icon=":material/check_circle:")
        return
    lines = ""
    if image and text and head_thresholds:
        def side(head: str, probs: dict, f: str) -> str:
            thr = head_thresholds[head][f]
            return f"{head} {probs[f]:.3f} {'≥' if probs[f] >= thr else '<'} {thr:.3f}"
        lines = "".join(f"- **{f}**: {side('image', image, f)} · {side('text', text, f)}\n" for f in discordant) + "\n"
    st.warning(f"**Discordance — image and {mode} disagree on: {', '.join(discordant)}.**\n\n" + lines
               + _DISCORDANCE_MEANING.get(mode, _DISCORDANCE_MEANING["report"]), icon=":material/warning:")


def out_of_distribution(flag: bool, score: float | None, reason: str = "") -> None:
    if flag:
        st.error("**This image does not look like the frontal chest X-rays the model was trained on**"
                 f"{' (' + reason + ')' if reason else ''}; OOD score {score or 0:.2f} (≥ 1 means outside). "
                 "The probabilities below are not trustworthy for it.", icon=":material/block:")


def probabilities(fusion: dict, image: dict, text: dict | None, thresholds: dict, *,
                  head_thresholds: dict | None = None, discordant: list | None = None, key: str = "") -> None:
    """Fused bars on the left; image vs text heads and a table on the right."""
    left, right = st.columns(2)
    with left:
        st.plotly_chart(probability_bars(fusion, thresholds), key=f"fused_{key}")
        st.caption("Bars: fused probability (red = at or above the finding's decision threshold); "
                   "black tick: the threshold, tuned on the validation split for this text mode.")
    with right:
        heads = {"image": image, **({"text": text} if text else {})}
        st.plotly_chart(head_bars(heads, head_thresholds or {}, fused_thresholds=thresholds), key=f"heads_{key}")
    st.dataframe(heads_table(fusion, image, text, thresholds, head_thresholds, discordant if text else None),
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("fused", "threshold", "image head", "text head", "image thr.", "text thr.")})
