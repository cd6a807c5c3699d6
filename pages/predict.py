"""Predict: one chest X-ray + its indication or report -> five findings, why, and a log entry."""
import hashlib

import streamlit as st

from core.data.images import ImageDecodeError, decode_image
from core.data.labels import TextMode, effective_mode
from core.data.text_clean import MAX_PAGE_TEXT_CHARS, TextError, clean_text
from core.errors import CxrError
from core.serving.predict_and_log import Study, predict_and_log, shown_name
from core.store import StoreError
from ui import attribution_view, decision_view, notices, prediction_view, router, sidebar, study_report_view
from ui.config import MAX_UPLOAD_MB
from ui.resources import metadata, predictor, store

router.require_router("pages/predict.py")

TEXT_KINDS = {"indication": "Indication — before the read", "report": "Report — report QA",
              "none": "No text — image only"}
RESULT = "predict_result"  # session key holding the last successful prediction
CLEARED = "predict_text_cleared"  # set when a new upload cleared the previous study's text
FROM_HEADER = "predict_text_from_header"  # set when a DICOM upload's header filled the text box

st.title("Predict")
st.caption(notices.INTENDED_USE)

meta, problem = metadata()
if meta is None:
    notices.no_weights(problem)
    st.stop()

def _new_file() -> None:
    """A new image must not be scored with the previous study's text: when the box still holds
    the text of the last prediction, clear it (text typed since is kept). A DICOM whose header holds
    the indication (Reason for the Requested Procedure) fills an empty box in indication mode, as the
    PACS command reads it: the same file gets the same numbers on this page and in its SR. The previous
    study's result goes: it must never sit under a new image (its header names a hashed file)."""
    last = st.session_state.pop(RESULT, None)
    if last and st.session_state.get("text") and st.session_state["text"] == last.get("input_text"):
        st.session_state["text"] = ""
        st.session_state[CLEARED] = True
    upload = st.session_state.get("upload")
    mode = st.session_state.get("text_kind", "indication")
    if upload is None or st.session_state.get("text") or mode != TextMode.INDICATION:
        return
    from core.pacs.study_work import indication_in
    found = indication_in(upload.getvalue())
    if found:
        st.session_state["text"] = found
        st.session_state[FROM_HEADER] = True
        st.session_state.pop(CLEARED, None)


left, right = st.columns([3, 2])
with left:
    upload = st.file_uploader("Chest X-ray (frontal view): PNG, JPEG or DICOM",
                              type=["png", "jpg", "jpeg", "dcm", "dicom"], key="upload",
                              max_upload_size=MAX_UPLOAD_MB, on_change=_new_file)
    kind = st.radio("The text below is…", list(TEXT_KINDS), format_func=TEXT_KINDS.get, horizontal=True,
                    key="text_kind")
    if st.session_state.pop(CLEARED, False):
        st.info("New image: the text box was cleared (it held the previous study's text).", icon=":material/info:")
    if st.session_state.pop(FROM_HEADER, False):
        st.info("The indication below was read from the DICOM header (Reason for the Requested Procedure), as the "
                "PACS command reads it. Edit or clear it before predicting.", icon=":material/info:")
    text = st.text_area("Indication or report text", key="text", height=140,  # no max_chars: long text is fitted
                        disabled=kind == "none",
                        placeholder="e.g. 'Shortness of breath, rule out pneumonia' (indication) or "
                                    "the FINDINGS and IMPRESSION of the report")
    go = st.button("Predict", type="primary", icon=":material/play_arrow:")
with right:
    st.markdown("**Two honest uses**  \n"
                "• *Before the read*: image + the clinical indication. The indication rarely names the "
                "finding, so this is genuine decision support.  \n"
                "• *Report QA*: image + the finished report. A **discordance** flag means the image "
                "disagrees strongly with what the report says (only for findings the image supports).")
    keep_name = st.checkbox("Keep the original file name in the log", key="keep_names",
                            help="Off (default): the log, the history and the export name the file "
                                 "'upload-<hash>'. PACS exports often name files after patients.")
    with st.expander("What is stored when you press Predict"):
        st.markdown(notices.stored(keep_name))


def run_prediction(data: bytes, name: str, text: str, mode: str, keep_name: bool, raw_text: str,
                   target: str | None = None) -> dict | None:
    """Decode, fit the text, predict, decide at ``target`` (the sidebar's operating point; None: the
    mode's default), log, and keep the result in the session. Returns the result, or None after
    showing why not."""
    if len(data) > MAX_UPLOAD_MB * 2**20:
        st.error(f"The file is over {MAX_UPLOAD_MB} MB; export the image at a smaller size.")
        return None
    try:
        decoded = decode_image(data, filename=name)
    except ImageDecodeError as exc:
        st.error(str(exc))
        return None
    try:
        model = predictor()
    except CxrError as exc:  # damaged weights, a missing backbone package: say it in one line
        st.error(f"The model could not be loaded: {exc}")
        return None
    try:
        db, not_logged = store(), None
    except StoreError as exc:  # an unusable log must not cost the user the prediction
        db, not_logged = None, exc
    study = Study(decoded.gray, data, name, text, mode, colorfulness=decoded.colorfulness)
    with st.spinner("Predicting…"):
        done = predict_and_log(model, db, study, source="predict", keep_name=keep_name,
                               target=target)
        pred, pid, window = done.prediction, done.row_id, done.window
        result = {"pid": pid, "pred": pred, "gray": decoded.gray, "text": window.read if pred.has_text else "",
                  "name": shown_name(name, data, keep_name), "notes": list(decoded.notes), "format": decoded.format,
                  "window_note": window.note if window else "", "input_text": raw_text,
                  "chars_read": window.chars_read if window else 0,  # the original's (a join adds a space)
                  "dicom": data if decoded.format == "DICOM" else None,  # the SR download's source (core.pacs.sr)
                  "key": pid if pid is not None else hashlib.sha256(data).hexdigest()[:12]}
        # Into the session before the next Streamlit call: a rerun requested meanwhile (a widget
        # event that arrives late) stops this run at that call, and the logged prediction must
        # still be shown by the next run (it was lost: the row was written, the page showed nothing).
        st.session_state[RESULT] = result
    not_logged = not_logged or done.log_error
    if not_logged is not None:
        st.error(f"The prediction is shown but was not logged: {not_logged}")
    return result


if go:
    st.session_state.pop(RESULT, None)  # a failed attempt must not leave the previous result on screen
    if upload is None:
        st.warning("Upload an image first.")
    else:
        raw = text or ""
        try:
            text = clean_text(raw, max_chars=MAX_PAGE_TEXT_CHARS)  # the cleaning of the CLIs: no control characters
        except TextError as exc:
            st.error(f"The text: {exc}.")
            st.stop()
        mode = effective_mode(text, kind)
        if kind != "none" and mode == TextMode.NONE:
            st.caption("No text given: predicting from the image alone.")
        run_prediction(upload.getvalue(), upload.name, text, kind, keep_name, raw, target=sidebar.chosen_target())

result = st.session_state.get(RESULT)
if not result:
    prediction_view.preload_chart_library()
if result:
    pred = result["pred"]
    decisions = decision_view.from_prediction(pred)
    st.divider()
    logged = f"logged as #{result['pid']}" if result["pid"] is not None else "not logged"
    st.subheader(f"Result — {result['name']}")
    read = (f"read {result.get('chars_read', len(result['text'])):,} characters of {pred.text_mode} text"
            if pred.has_text else "no text read (image only)")
    st.caption(f"{result['format']} · text mode **{pred.text_mode}** · {read} · "
               f"{decision_view.point_caption(decisions, sidebar.chosen_target())} · model {pred.model} · "
               f"{pred.latency_ms:.0f} ms · {logged}")
    for note in result["notes"]:
        st.caption(f"Note: {note}")
    img_col, out_col = st.columns([1, 3])
    img_col.image(result["gray"], width="stretch")
    img_col.caption("As uploaded (grayscale)")  # below the image, clear of its fullscreen button
    with out_col:
        prediction_view.out_of_distribution(pred.out_of_distribution, pred.ood_score, pred.ood_reason)
        prediction_view.decisions_headline(decisions)
        if not pred.out_of_distribution:
            prediction_view.discordance(pred.discordant, pred.text_mode, image=pred.image, text=pred.text,
                                        head_thresholds=pred.head_thresholds,
                                        details=pred.discordance, head_calibrated=pred.head_calibrated)
        if pred.text_mode != TextMode.NONE:
            st.markdown("**Text the model read**")
            if result.get("window_note"):
                st.warning(result["window_note"], icon=":material/content_cut:")
            st.code(result["text"], language=None, wrap_lines=True)  # verbatim, never rendered as markup
    bars = len(decision_view.flagged_for_chart(decisions)[0])
    with st.container(key=prediction_view.result_marker(result["key"], bars)):
        prediction_view.show_decisions(decisions, key="predict", evidence=pred.evidence,
                                       image_evidence=pred.head_evidence.get("image"),
                                       image_reliable=pred.image_reliable,
                                       heads={"image": pred.image, **({"text": pred.text} if pred.has_text else {})},
                                       head_calibrated=pred.head_calibrated)
    study_report_view.download(result)
    if result.get("dicom"):  # a DICOM upload: its result as a DICOM SR for the image's own study
        from core.pacs.sr import SrError, sr_file
        try:
            result.setdefault("sr", sr_file(result["dicom"], pred, predictor().description))
            st.download_button("SR of this prediction (DICOM)", data=result["sr"], file_name="prediction-sr.dcm",
                               mime="application/dicom", icon=":material/download:", key="predict_sr")
        except SrError as exc:
            st.caption(f"No SR download: {exc}.")

    st.subheader("Why? (attributions on demand)")
    default = decision_view.why_default(decisions, pred.discordant)
    if default is None:
        st.caption("No finding was assessed for this study, so an attribution would explain a number no one "
                   "should read; it is still offered below.")
    attribution_view.explain(scope="predict", prediction_id=result["key"], gray=result["gray"],
                             text=result["text"], mode=pred.text_mode, default_finding=default,
                             not_assessed=decisions.not_assessed())
