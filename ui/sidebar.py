"""Sidebar: which model is loaded and whether the app is shared."""
from __future__ import annotations

import streamlit as st

from core.serving.sharing import share_status
from ui.charts import finite
from ui.config import SHARE_COMMAND, weights_dir
from ui.resources import metadata

# The headline numbers: the honest tasks first (image only, indication), then report QA.
HEADLINE = (("none/image", "Image only"), ("indication/fusion", "Image + indication"),
            ("report/fusion", "Image + report"))


def _auc_text(entry: dict | None) -> str:
    """'0.81 (0.74–0.87)' from a macro AUC entry, or '' when there is none."""
    entry = entry or {}
    auc, ci = entry.get("macro_auc"), entry.get("macro_auc_ci") or [None, None]
    if not finite(auc):
        return ""
    return f"{auc:.2f}" + (f" ({ci[0]:.2f}–{ci[1]:.2f})" if len(ci) == 2 and all(finite(c) for c in ci) else "")


def model_status() -> dict | None:
    meta, problem = metadata()
    st.subheader("Model")
    if meta is None:
        st.warning("No model loaded.")
        st.caption(f"Weights folder: `{weights_dir()}` — see any page for how to train one.")
        return None
    backbones = (meta.backbones or {})
    image = backbones.get("image", "?")
    if backbones.get("image_weights") in (None, "none"):
        image += " (from scratch)"
    st.markdown(f"**Version** `{meta.version or '?'}`  \n**Created** {meta.created_at or '?'}  \n"
                f"**Image** {image}  \n**Text** {backbones.get('text', '?')}  \n"
                f"**Input** {meta.preprocessing.image_size if meta.preprocessing else '?'} px")
    summary = meta.test_summary or {}
    cv = ((meta.evidence or {}).get("cv") or {}).get("macro") or {}
    lines = []
    for key, label in HEADLINE:
        test, folds = _auc_text(summary.get(key)), _auc_text(cv.get(key))
        if test:
            lines.append(f"{label}: **{test}**" + (f" · cross-validated {folds}" if folds else ""))
    if lines:
        st.markdown("Macro AUC (95% CI), test split" + (" · cross-validation" if cv else "") + "  \n"
                    + "  \n".join(lines))
        if cv:
            st.caption("Cross-validation: the training recipe retrained without each fold and scored on it, "
                       "so no report was used to train or tune the model that scored it; trust it over the "
                       "single test split where they differ.")
        st.caption("Report-mode numbers are inflated: the labels were coded from the report text.")
    reliable = (meta.evidence or {}).get("image_reliable")
    if reliable:
        weak = [f for f, ok in reliable.items() if not ok]
        if weak:
            st.markdown("**Not reliable from the image:** " + ", ".join(weak))
            st.caption("Too few held-out positives or a CI reaching chance; see the Model card.")
    return meta


def sharing_status() -> dict:
    st.subheader("Sharing")
    status = share_status()
    if status.get("shared"):
        st.success(f"Shared at {status['url']}")
        st.caption("Password-protected." if status.get("auth") else "No password: anyone with the URL gets in.")
    else:
        st.caption("Local only. To share over ngrok:")
        st.code(SHARE_COMMAND, language="bash", wrap_lines=True)
        if status.get("error"):
            st.caption(f"Last attempt failed: {status['error']}")
    return status


def render() -> None:
    with st.sidebar:
        model_status()
        st.divider()
        sharing_status()
