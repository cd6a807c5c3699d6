"""PACS: list the server's recent chest studies, score the chosen ones, store their SRs back (core.pacs).

The connection is configured by the environment ($CXR_PACS_URL and $CXR_PACS_USER / $CXR_PACS_PASSWORD,
or ~/.netrc). Each study is decided at the operating point picked here (each mode's default unless the
user picks another) by the one policy (core.serving.decision): the table shows per finding flagged / not
flagged / not assessed and the calibrated number where there is one, says what a flag means, and names
the point — as the SR stored in the study does. The page shows a study only by its date, modality,
views and a short hash of its UID: never a patient name, patient ID or accession number (the app may
be shared over a tunnel). The study UIDs stay on the server, in the session; the browser sees the
hashes only.
"""
from datetime import date, timedelta

import pandas as pd
import streamlit as st

from core.data.labels import MODE_NAMES
from core.errors import CxrError
from core.evaluation.operating_targets import default_name
from core.model.description import describe
from core.pacs.connection import PASSWORD_ENV, URL_ENV, USER_ENV, PacsError, configured_url, connect
from core.serving.decision import operating_point_words
from ui import notices, router
from ui.resources import metadata, predictor, store
from ui.sidebar import chosen_target

router.require_router("pages/pacs.py")

REFS = "pacs_refs"        # short hash -> StudyRef (server-side only)
RESULT = "pacs_result"

st.title("PACS")
st.caption(notices.INTENDED_USE)

url = configured_url()
if url is None:
    st.info(f"No PACS connection is configured: set `{URL_ENV}` (the DICOMweb root, e.g. "
            f"http://localhost:8042/dicom-web) and `{USER_ENV}` / `{PASSWORD_ENV}` before `streamlit run app.py`.",
            icon=":material/info:")
    st.stop()

meta, problem = metadata()
version = (meta.get("version") if isinstance(meta, dict) else getattr(meta, "version", None)) if meta else None
st.markdown("Chest CR/DX studies on the configured PACS (DICOMweb). Pick studies and score them: each gets "
            "one DICOM SR per model version and operating point, stored into its own study, and a row in the "
            "prediction log. "
            "Studies are shown by a hash of their UID, never by patient.")


@st.cache_data(ttl=30, show_spinner="Asking the PACS for its studies…")
def _list(pacs_url: str, since: str | None, model_version: str | None):
    from core.pacs.listing import list_studies
    return list_studies(connect(pacs_url), since=since, version=model_version)


left, right = st.columns([2, 3])
with left:
    everything = st.checkbox("All studies (not only recent ones)", key="pacs_all")
    since = st.date_input("Studies from", value=date.today() - timedelta(days=30), key="pacs_since",
                          disabled=everything)
with right:
    if st.button("Refresh the list", icon=":material/refresh:", key="pacs_refresh"):
        _list.clear()
    # the operating point every study is decided at (the PACS reads image only or image + indication)
    ops = describe(meta).operating_points if meta is not None else None
    # the sidebar's choice carries over (None: each mode's default; the PACS reads image only or indication)
    default_point = chosen_target() or default_name("none")
    choices = list((ops.choices if ops else None) or [default_point])
    point = st.selectbox("Operating point (what a flag means; named in each SR)", choices, key="pacs_point",
                         index=choices.index(default_point) if default_point in choices else 0,
                         help="A flag is a probability at or above the threshold that gives this specificity "
                              "(or sensitivity) on held-out reports. Each finding's stated sensitivity, "
                              "specificity and PPV are shown with the results and written into the SR.")
try:
    rows, refs = _list(url, None if everything else since.strftime("%Y%m%d"), version)
except PacsError as exc:
    st.error(str(exc))
    st.stop()
st.session_state[REFS] = refs

if not rows:
    st.info("No CR/DX study on the PACS in that period.", icon=":material/info:")
    st.stop()
table = pd.DataFrame(rows)
event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row", key="pacs_table",
                     column_config={"study": st.column_config.TextColumn("study (hash)")})
chosen = [rows[i]["study"] for i in event.selection.rows]
st.caption(f"{len(rows)} studies listed (newest first); {len(chosen)} selected. Tick rows to choose them.")
if meta is None:
    notices.no_weights(problem)
go = st.button(f"Score {len(chosen)} selected and store their SRs", type="primary", icon=":material/play_arrow:",
               disabled=meta is None or not chosen, key="pacs_go")

if go:
    st.session_state.pop(RESULT, None)
    from core.pacs.run import Runner
    todo = [refs[h] for h in chosen if h in refs]
    progress = st.progress(0.0, text=f"Scoring {len(todo)} studies…")
    done: list = []

    def _step(outcome) -> None:
        done.append(outcome)
        progress.progress(len(done) / max(len(todo), 1), text=f"{len(done)} of {len(todo)} studies")

    error = None
    try:
        outcomes = Runner(connect(url), predictor(), store(), source="batch",
                          on_outcome=_step, target=point).run(todo)
    except CxrError as exc:  # the PACS went away, refused credentials, an unusable log: one line
        error = f"Scoring stopped: {exc}. What was stored is complete; score again to do the rest."
        outcomes = done
    st.session_state[RESULT] = {"outcomes": outcomes, "error": error}
    _list.clear()
    st.rerun()  # the list again, now saying which studies have an SR of this model


def _cell(d) -> str:
    """One finding of one study: its decision and the calibrated number, where there is one."""
    if not d.assessed:
        return "not assessed"
    return d.status + (f" · {d.probability:.3f}" if d.probability is not None else " (no calibrated number)")


def _md(text: str) -> str:
    return text.replace("[", "\\[").replace("]", "\\]")


last = st.session_state.get(RESULT) or {}
if last.get("error"):
    st.error(last["error"])
outcomes = last.get("outcomes")
if outcomes:
    from core.pacs.connection import short_hash
    result_rows = []
    # the point every study of this run was decided at, named in the column that shows the flags
    points = sorted({o.decisions.operating_point for o in outcomes if o.decisions is not None})
    flagged_at = "flagged at " + " / ".join(points) if points else "flagged"
    for o in outcomes:
        d = o.decisions
        # the decisions first (no sideways scroll to reach them), one cell per finding, no number the app hides
        row = {"study": short_hash(o.study_uid), "status": o.status,
               flagged_at: "" if d is None else ("not assessed (out of distribution)" if d.out_of_distribution
                                                 else ", ".join(d.flagged()) or "none"),
               **({x.finding: _cell(x) for x in d} if d is not None else {}),
               "mode": o.text_mode or "", "OOD": bool(o.out_of_distribution), "log id": o.row_id, "reason": o.reason}
        result_rows.append(row)
    n_scored = sum(o.status == "scored" for o in outcomes)
    n_exists = sum(o.status == "exists" for o in outcomes)
    st.success(f"{n_scored} scored and their SRs stored; {n_exists} already had an SR of this model at this "
               f"operating point; {len(outcomes) - n_scored - n_exists} skipped.")
    st.dataframe(pd.DataFrame(result_rows), hide_index=True,
                 column_config={"study": st.column_config.TextColumn("study (hash)")})
    # what a flag means, per text mode seen (the same words the SR carries)
    shown: dict[str, object] = {}
    for o in outcomes:
        if o.decisions is not None and not o.decisions.out_of_distribution:
            shown.setdefault(o.text_mode, o.decisions)
    for mode, d in shown.items():
        lines = [f"- **{x.finding}**: {_md(operating_point_words(x.operating_point, x.finding))}"
                 for x in d if x.assessed]
        missing = d.not_assessed()
        if missing:
            reasons = "; ".join(sorted(set(missing.values())))
            lines.append(f"- **Not assessed**: {', '.join(missing)} — {_md(reasons)}")
        st.caption(f"Text mode {MODE_NAMES.get(mode, mode)}, flags at **{d.operating_point}**:\n" + "\n".join(lines))
    st.caption("A number is the calibrated probability in each study's text mode (indication when the DICOM "
               "header holds one, else image only); a finding without one is decided all the same. The SR "
               "stored in each study says the same: per finding its presence at the operating point, what a "
               "flag there means, the number where calibrated and the held-out evidence.")
