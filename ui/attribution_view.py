"""'Why?' on demand: a finding, a head and a method; the result is cached per prediction
in st.session_state so reruns never recompute it."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.labels import FINDINGS, HEADS
from ui.overlay import overlay
from ui.resources import MODEL_LOCK, predictor
from ui.tokens import tokens_html

METHODS = {"gradcam": "Grad-CAM (fast)", "ig": "Integrated Gradients (slower)"}


def _cache() -> dict:
    return st.session_state.setdefault("attributions", {})


def explain(*, scope: str, prediction_id: int, gray: np.ndarray, text: str, mode: str,
            default_finding: str | None = None):
    """Controls + result. ``scope`` separates pages that explain the same prediction from
    different pixels (the upload vs the stored review copy). Returns the Attribution or None."""
    c1, c2, c3 = st.columns([2, 2, 3])
    index = FINDINGS.index(default_finding) if default_finding in FINDINGS else 0
    finding = c1.selectbox("Finding", FINDINGS, index=index, key=f"{scope}_attr_finding_{prediction_id}")
    heads = HEADS if mode != "none" else ("image",)
    head = c2.radio("Head", heads, horizontal=True, key=f"{scope}_attr_head_{prediction_id}")
    method = c3.radio("Method", list(METHODS), format_func=METHODS.get, horizontal=True,
                      key=f"{scope}_attr_method_{prediction_id}")
    key = (scope, prediction_id, finding, head, method)
    result = _cache().get(key)
    slot = st.empty()  # the button goes once its result is drawn, so it never sits above a finished map
    if result is None and slot.button("Explain", key=f"{scope}_attr_go_{prediction_id}", icon=":material/search:"):
        with st.spinner(f"Computing {METHODS[method]} for {finding} ({head} head)…"), MODEL_LOCK:
            result = predictor().attribute(gray, text, mode, finding=finding, head=head, method=method)
        _cache()[key] = result
        slot.empty()
    if result is not None:
        _draw(result, gray, mode)
    return result


def _draw(result, gray: np.ndarray, mode: str) -> None:
    cols = st.columns(2)
    if result.head == "text":
        cols[0].caption("The text head does not look at the image, so there is no heatmap for it.")
    elif not np.any(result.heatmap > 0):
        cols[0].image(gray, caption="No heatmap", width="stretch")
        cols[0].caption(f"{METHODS[result.method]} found no region that raises this probability (the map is "
                        "zero everywhere); try the other method or another head.")
    else:
        cols[0].image(overlay(gray, result.heatmap), caption=f"{METHODS[result.method]}: {result.finding}, "
                      f"{result.head} head (bright = more influence)", width="stretch")
    with cols[1]:
        if mode == "none":
            st.caption("No text was read, so there are no token attributions.")
        elif result.head == "image":
            st.caption("The image head does not read the text, so there are no token attributions.")
        elif result.tokens:
            st.markdown("**Text attributions** (red raises, blue lowers the probability)")
            st.markdown(tokens_html(result.tokens), unsafe_allow_html=True)  # every word is html.escape'd
        extra = f"; IG convergence delta {result.convergence_delta:.3g}" if result.convergence_delta is not None else ""
        st.caption(f"Computed in {result.seconds:.1f} s{extra}.")
