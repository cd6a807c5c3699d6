"""PACS: list the server's recent chest studies, score the chosen ones, store their SRs back (core.pacs).

The connection is configured by the environment ($CXR_PACS_URL and $CXR_PACS_USER / $CXR_PACS_PASSWORD,
or ~/.netrc). The page shows a study only by its date, modality, views and a short hash of its UID:
never a patient name, patient ID or accession number (the app may be shared over a tunnel). The
study UIDs stay on the server, in the session; the browser sees the hashes only.
"""
from datetime import date, timedelta

import pandas as pd
import streamlit as st

from core.errors import CxrError
from core.pacs.connection import PASSWORD_ENV, URL_ENV, USER_ENV, PacsError, configured_url, connect
from ui import notices, router
from ui.batch_score import finding_columns, headline_of, hidden_findings
from ui.prediction_view import not_calibrated_caption, reliability_caption, unreliable_findings
from ui.resources import MODEL_LOCK, metadata, predictor, store

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
            "one DICOM SR per model version, stored into its own study, and a row in the prediction log. "
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
        outcomes = Runner(connect(url), predictor(), store(), lock=MODEL_LOCK, source="batch",
                          on_outcome=_step).run(todo)
    except CxrError as exc:  # the PACS went away, refused credentials, an unusable log: one line
        error = f"Scoring stopped: {exc}. What was stored is complete; score again to do the rest."
        outcomes = done
    st.session_state[RESULT] = {"outcomes": outcomes, "error": error}
    _list.clear()
    st.rerun()  # the list again, now saying which studies have an SR of this model

last = st.session_state.get(RESULT) or {}
if last.get("error"):
    st.error(last["error"])
outcomes = last.get("outcomes")
if outcomes:
    from core.pacs.connection import short_hash
    result_rows = []
    for o in outcomes:
        # as the batch page: no number where not calibrated, what the image cannot support marked; the
        # numbers first, so the table needs no sideways scroll to show them
        row = {"study": short_hash(o.study_uid), "status": o.status, "mode": o.text_mode or "",
               **{f: (v if o.calibrated.get(f, True) else None) for f, v in (o.fusion or {}).items()},
               "above threshold": headline_of(o.positive, o.image_reliable, bool(o.out_of_distribution))
               if o.fusion else "", "OOD": bool(o.out_of_distribution), "log id": o.row_id, "reason": o.reason}
        result_rows.append(row)
    n_scored = sum(o.status == "scored" for o in outcomes)
    n_exists = sum(o.status == "exists" for o in outcomes)
    st.success(f"{n_scored} scored and their SRs stored; {n_exists} already had an SR of this model; "
               f"{len(outcomes) - n_scored - n_exists} skipped.")
    frame = pd.DataFrame(result_rows)
    scored = next((o for o in outcomes if o.fusion), None)
    reliable, evidence = (scored.image_reliable, scored.image_evidence) if scored else (None, None)
    hidden = hidden_findings([r for r in result_rows if r["mode"]], reliable)
    st.dataframe(frame, hide_index=True, column_config=finding_columns(reliable, evidence, hidden))
    reliability_caption(unreliable_findings(reliable, evidence))
    not_calibrated_caption(hidden)
    st.caption("The numbers are the fused probability in each study's text mode (indication when the DICOM "
               "header holds one, else image only). The SR stored in each study carries every head's number, "
               "and says per finding whether it is calibrated and whether the image can support it.")
