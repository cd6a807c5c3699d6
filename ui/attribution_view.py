"""'Why?' on demand: a finding, a head and a method; the result is cached per prediction
in st.session_state so reruns never recompute it. The controls and the result live in a
fragment: choosing and explaining reruns this part only, not the page's charts."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.data.labels import HEADS, Head, TextMode
from core.errors import CxrError
from ui.overlay import colour_bar_css, overlay
from ui.resources import predictor
from ui.tokens import tokens_html

METHODS = {"gradcam": "Grad-CAM (coarse regions)", "ig": "Integrated Gradients (finer, slower)"}
TEXT_METHOD = {"ig": "Integrated Gradients (per-word scores)"}
DELTA_OK = 0.05  # |convergence delta| below this: the attributions add up to the model's change


def _cache() -> dict:
    return st.session_state.setdefault("attributions", {})


def methods_for(head: str) -> dict[str, str]:
    """Every head x method offered works: the text head does not look at the image, so only
    Integrated Gradients over its words is offered for it."""
    return TEXT_METHOD if head == Head.TEXT else METHODS


@st.fragment
def explain(*, scope: str, prediction_id: int, gray: np.ndarray, text: str, mode: str,
            default_finding: str | None = None, not_assessed: dict[str, str] | None = None):
    """Controls + result. ``scope`` separates pages that explain the same prediction from
    different pixels (the upload vs the stored review copy). ``default_finding``: the one it opens on
    (ui.decision_view.why_default: never one not assessed); ``not_assessed``: finding -> why, marked in
    the list. Returns the Attribution or None."""
    c1, c2, c3 = st.columns([2, 2, 3])
    findings = predictor().findings  # the loaded weights' own (core.model.description)
    index = findings.index(default_finding) if default_finding in findings else 0
    not_assessed = not_assessed or {}
    finding = c1.selectbox("Finding", findings, index=index, key=f"{scope}_attr_finding_{prediction_id}",
                           format_func=lambda f: f + (" (not assessed)" if f in not_assessed else ""))
    heads = HEADS if mode != TextMode.NONE else ("image",)
    head = c2.radio("Head", heads, horizontal=True, key=f"{scope}_attr_head_{prediction_id}")
    offered = methods_for(head)
    method = c3.radio("Method", list(offered), format_func=offered.get, horizontal=True,
                      key=f"{scope}_attr_method_{prediction_id}_{'text' if head == 'text' else 'image'}")
    if head == Head.TEXT:
        c3.caption("Grad-CAM explains image regions; the text head reads only the text.")
    key = (scope, prediction_id, finding, head, method)
    result = _cache().get(key)
    slot = st.empty()  # the button goes once its result is drawn, so it never sits above a finished map
    if result is None and slot.button("Explain", key=f"{scope}_attr_go_{prediction_id}", icon=":material/search:"):
        try:
            with st.spinner(f"Computing {offered[method]} for {finding} ({head} head)…"):
                result = predictor().attribute(gray, text, mode, finding=finding, head=head, method=method)
        except CxrError as exc:  # InputError: a head x method this input cannot have
            slot.error(f"No explanation: {exc}.")
            return None
        _cache()[key] = result
        slot.empty()
    if result is not None:
        _draw(result, gray, mode)
    return result


def _draw(result, gray: np.ndarray, mode: str) -> None:
    cols = st.columns(2)
    label = methods_for(result.head).get(result.method, result.method)
    if result.head == Head.TEXT:
        cols[0].caption("The text head does not look at the image, so there is no heatmap for it.")
    elif not np.any(result.heatmap > 0):
        cols[0].image(gray, width="stretch")
        cols[0].caption(f"No heatmap: {label} found no region that raises this probability (the map is "
                        "zero everywhere); try the other method or another head.")
    else:
        cols[0].image(overlay(gray, result.heatmap), width="stretch")
        cols[0].caption(f"{label}: {result.finding}, {result.head} head")
        cols[0].html(colour_bar_css("least influence", "most influence"))
    with cols[1]:
        if mode == TextMode.NONE:
            st.caption("No text was read, so there are no token attributions.")
        elif result.head == Head.IMAGE:
            st.caption("The image head does not read the text, so there are no token attributions.")
        elif result.words:
            st.markdown("**Text attributions** (red raises, blue lowers the probability)")
            st.markdown(tokens_html(result.words), unsafe_allow_html=True)  # every word is html.escape'd
        st.caption(f"Computed in {result.seconds:.1f} s.")
        if result.convergence_delta is not None:
            d = result.convergence_delta
            verdict = ("the map accounts for the model's change well" if d < DELTA_OK else
                       "the map is approximate: read it for where, not for how much")
            st.caption(f"Integrated Gradients convergence delta {d:.3g} (how far the attributions' sum misses "
                       f"the change in the model's output from a black image; under {DELTA_OK} is tight): {verdict}.")
