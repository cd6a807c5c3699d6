"""Draw a site validation (core.evaluation.site_validation's result): the same tables, words and plots as the
printable report (core.evaluation.site_report), and its downloads."""
from __future__ import annotations

import base64
import json

import pandas as pd
import streamlit as st

from core.evaluation.site_plots import calibration_svg, roc_svg
from core.evaluation.site_report import (
    GROUPS,
    adaptation_rows,
    finding_rows,
    ood_words,
    reasons,
    site_report_html,
)

LABEL_WORDS = {"columns": "the site's own label columns", "report": "read from the report text"}


def _plots(svgs: list[str]) -> None:
    """The report's SVG figures, as images (data URIs: nothing is fetched from anywhere)."""
    imgs = "".join(f"<img src='data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}' width='190' "
                   "alt='plot'/>" for svg in svgs)
    st.markdown(f"<div style='display:flex;flex-wrap:wrap;gap:6px'>{imgs}</div>", unsafe_allow_html=True)


def _md(text: str) -> str:
    return text.replace("[", "\\[").replace("]", "\\]")


def render(result: dict) -> None:
    ood = result.get("out_of_distribution") or {}
    st.subheader(f"{result.get('site') or 'Site'}: {result['n_studies']:,} studies")
    cols = st.columns(4)
    cols[0].metric("Studies", f"{result['n_studies']:,}")
    cols[1].metric("Images", f"{ood.get('images', 0):,}")
    cols[2].metric("Out of distribution", f"{100 * (ood.get('rate') or 0):.1f}%",
                   help="Images the guard says are not frontal chest X-rays like the training ones: " + ood_words(ood))
    cols[3].metric("Labels", result.get("labels", "?"), help=LABEL_WORDS.get(result.get("labels"), ""))
    st.caption(f"Model `{result.get('model')}` · labels {LABEL_WORDS.get(result.get('labels'), '?')} · "
               f"source {result.get('source', '?')}")
    for key, task in (result.get("tasks") or {}).items():
        st.markdown(f"#### {task['task'].capitalize()} (`{key}`): {task['n_studies']:,} studies, "
                    f"flags at {task['operating_point']}")
        rows = pd.DataFrame(finding_rows(task))
        # the report's one wide table as three, so every verdict is on screen without scrolling sideways
        for (title, columns), name in zip(GROUPS, ("auc", "calibration", "flags"), strict=True):
            st.caption(title.format(point=task["operating_point"]))
            st.dataframe(rows[["finding", *columns]], hide_index=True, key=f"site_{name}_{key}")
        why = reasons(task)
        if why:
            st.caption("\n".join(f"- {_md(w)}" for w in why))
        left, right = st.columns(2)
        with left:
            st.caption("ROC curves (site; the shipped cross-validated AUC in grey)")
            _plots([roc_svg(f, e) for f, e in task["findings"].items()])
        with right:
            st.caption("Calibration: observed against mean predicted (the dashed line is calibrated)")
            _plots([calibration_svg(f, e) for f, e in task["findings"].items() if e.get("assessed")])
    agree = (result.get("label_agreement") or {}).get("findings")
    if agree:
        st.markdown("#### The report reader against the site's labels")
        rows = [{"finding": f, "studies": a["n"], "positives": a["positives"],
                 "reader sensitivity": a.get("sensitivity"), "reader specificity": a.get("specificity"),
                 "agreement": a.get("agreement"), "kappa": a.get("kappa")} for f, a in agree.items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="site_agreement")
    adaptation = result.get("adaptation")
    if adaptation:
        st.markdown(f"#### Site adaptation: `{adaptation.get('version') or 'not written'}`")
        if adaptation.get("summary"):
            st.caption(adaptation["summary"])
        st.dataframe(pd.DataFrame(adaptation_rows(adaptation)), hide_index=True, key="site_adaptation")
        if adaptation.get("refused"):
            st.caption("\n".join(f"- not adapted: {_md(w)}" for w in adaptation["refused"]))
    name = (result.get("site") or "site").replace(" ", "-").lower()
    left, right = st.columns(2)
    left.download_button("Download the report (HTML, printable)", site_report_html(result),
                         file_name=f"site-validation-{name}.html", mime="text/html", icon=":material/print:",
                         key="site_html")
    right.download_button("Download the numbers (JSON)", json.dumps(result, indent=1),
                          file_name=f"site-validation-{name}.json", mime="application/json",
                          icon=":material/download:", key="site_json")
