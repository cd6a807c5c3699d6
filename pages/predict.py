"""Predict: one chest X-ray + its indication or report -> five findings, why, and a log entry."""
import hashlib

import streamlit as st

from core.imaging import ImageDecodeError, decode_image
from core.labels import FINDINGS
from core.store import StoreError
from core.textclean import TextError, clean_text
from ui import attribution_view, notices, prediction_view, router
from ui.config import MAX_UPLOAD_MB
from ui.records import log_prediction
from ui.resources import MODEL_LOCK, metadata, predictor, store

router.require_router("pages/predict.py")

TEXT_KINDS = {"indication": "Indication — before the read", "report": "Report — report QA",
              "none": "No text — image only"}
RESULT = "predict_result"  # session key holding the last successful prediction

st.title("Predict")
st.caption(notices.INTENDED_USE)

meta, problem = metadata()
if meta is None:
    notices.no_weights(problem)
    st.stop()

left, right = st.columns([3, 2])
with left:
    upload = st.file_uploader("Chest X-ray (frontal view): PNG, JPEG or DICOM",
                              type=["png", "jpg", "jpeg", "dcm", "dicom"], key="upload",
                              max_upload_size=MAX_UPLOAD_MB)
    kind = st.radio("The text below is…", list(TEXT_KINDS), format_func=TEXT_KINDS.get, horizontal=True,
                    key="text_kind")
    text = st.text_area("Indication or report text", key="text", height=140, max_chars=8000,
                        disabled=kind == "none",
                        placeholder="e.g. 'Shortness of breath, rule out pneumonia' (indication) or "
                                    "the FINDINGS and IMPRESSION of the report")
    go = st.button("Predict", type="primary", icon=":material/play_arrow:")
with right:
    st.markdown("**Two honest uses**  \n"
                "• *Before the read*: image + the clinical indication. The indication rarely names the "
                "finding, so this is genuine decision support.  \n"
                "• *Report QA*: image + the finished report. Look for **discordance** — the image head "
                "and the text head disagreeing.")
    with st.expander("What is stored when you press Predict"):
        st.markdown(notices.STORED)


def run_prediction(data: bytes, name: str, text: str, mode: str) -> dict | None:
    """Decode, predict, log. Returns the result for the session, or None after showing why not."""
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
    except Exception as exc:  # noqa: BLE001 — damaged weights, missing backbone: say it in one line
        st.error(f"The model could not be loaded: {exc}")
        return None
    with st.spinner("Predicting…"), MODEL_LOCK:
        pred = model.predict(decoded.gray, text, mode, colorfulness=decoded.colorfulness)
    pid = None
    try:
        pid = log_prediction(store(), pred, gray=decoded.gray, image_bytes=data, image_name=name,
                             text=text, source="predict")
    except StoreError as exc:
        st.error(f"The prediction is shown but was not logged: {exc}")
    return {"pid": pid, "pred": pred, "gray": decoded.gray, "text": text if pred.has_text else "",
            "name": name, "notes": list(decoded.notes), "format": decoded.format,
            "key": pid if pid is not None else hashlib.sha256(data).hexdigest()[:12]}


if go:
    st.session_state.pop(RESULT, None)  # a failed attempt must not leave the previous result on screen
    if upload is None:
        st.warning("Upload an image first.")
    else:
        try:
            text = clean_text(text or "")  # the same cleaning as the CLIs: no control characters
        except TextError as exc:
            st.error(f"The text: {exc}.")
            st.stop()
        mode = kind if text else "none"
        if kind != "none" and mode == "none":
            st.caption("No text given: predicting from the image alone.")
        result = run_prediction(upload.getvalue(), upload.name, text if mode != "none" else "", mode)
        if result:
            st.session_state[RESULT] = result

result = st.session_state.get(RESULT)
if result:
    pred = result["pred"]
    st.divider()
    logged = f"logged as #{result['pid']}" if result["pid"] is not None else "not logged"
    st.subheader(f"Result — {result['name']}")
    st.caption(f"{result['format']} · text mode **{pred.text_mode}** · model {pred.model} · "
               f"{pred.latency_ms:.0f} ms · {logged}")
    for note in result["notes"]:
        st.caption(f"Note: {note}")
    img_col, out_col = st.columns([1, 3])
    img_col.image(result["gray"], caption="As uploaded (grayscale)", width="stretch")
    with out_col:
        prediction_view.out_of_distribution(pred.out_of_distribution, pred.ood_score, pred.ood_reason)
        if not pred.out_of_distribution:
            positive = pred.positive("fusion")
            st.markdown("**Above threshold (fused):** " + (", ".join(positive) if positive else "none"))
            prediction_view.discordance(pred.discordant, pred.text_mode, image=pred.image, text=pred.text,
                                        head_thresholds=pred.head_thresholds)
        if pred.text_mode != "none":
            st.markdown("**Text the model read**")
            st.code(result["text"], language=None, wrap_lines=True)  # verbatim, never rendered as markup
    if pred.out_of_distribution:
        with st.expander("Show the probabilities anyway (unreliable for this image)"):
            prediction_view.probabilities(pred.fusion, pred.image, pred.text if pred.has_text else None,
                                          pred.thresholds, head_thresholds=pred.head_thresholds,
                                          discordant=pred.discordant, key="predict")
    else:
        prediction_view.probabilities(pred.fusion, pred.image, pred.text if pred.has_text else None,
                                      pred.thresholds, head_thresholds=pred.head_thresholds,
                                      discordant=pred.discordant, key="predict")

    st.subheader("Why? (attributions on demand)")
    default = (pred.discordant or pred.positive("fusion") or [max(FINDINGS, key=pred.fusion.get)])[0]
    attribution_view.explain(scope="predict", prediction_id=result["key"], gray=result["gray"],
                             text=result["text"], mode=pred.text_mode, default_finding=default)
