"""The Predict page's single-study report download (core.serving.study_report): the page state's
prediction, image and the latest attribution computed for it, built when the button is clicked."""
from __future__ import annotations

import io

import numpy as np
import streamlit as st
from PIL import Image

from core.data.images import encode_png, thumbnail
from core.data.labels import Head
from core.serving.study_report import study_report_html
from ui.overlay import overlay

REPORT_PX = 512  # the report's copy of the image: enough to read on paper, small enough to mail


def _png_rgb(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def report_bytes(result: dict, attributions: dict) -> bytes:
    """The report of the Predict page's ``result``, with the latest image attribution computed for
    it (``attributions``: ui.attribution_view's cache, keyed by (scope, prediction, ...))."""
    gray = thumbnail(result["gray"], REPORT_PX)
    maps = [a for (scope, pid, *_), a in list(attributions.items())
            if scope == "predict" and pid == result["key"] and a.head != Head.TEXT and np.any(a.heatmap > 0)]
    latest = maps[-1] if maps else None
    return study_report_html(
        result["pred"], image_png=encode_png(gray), image_name=result["name"], text_read=result["text"],
        overlay_png=_png_rgb(overlay(gray, latest.heatmap)) if latest else None,
        overlay_caption=f"{latest.method}: {latest.finding}, {latest.head} head" if latest else "").encode()


def download(result: dict) -> None:
    """The button; the report is built at the click (Streamlit runs ``data`` then), so it carries
    an attribution computed after the page was drawn."""
    attributions = st.session_state.setdefault("attributions", {})  # the same dict attribution_view fills
    st.download_button("Single-study report (HTML, prints on one page)",
                       data=lambda: report_bytes(result, attributions), file_name=f"cxr-report-{result['key']}.html",
                       mime="text/html", icon=":material/description:", key="predict_report",
                       help="Image, probabilities with their held-out evidence, the latest attribution you computed "
                            "below, model version and the intended-use notice: a research record.")
