"""Batch review, part (a): score many studies at once and log every one (source='batch')."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.images import ImageDecodeError, decode_image
from core.data.labels import FINDINGS, TEXT_MODES
from core.errors import CxrError
from core.serving.batch_uploads import CsvError, Item, Skipped, expand_uploads, read_text_map
from core.serving.predict_and_log import Study, predict_and_log_many
from ui.config import MAX_UPLOAD_MB
from ui.prediction_view import reliability_caption, unreliable_findings
from ui.resources import MODEL_LOCK, predictor, store

BATCH_SIZE = 8  # studies per model call: amortises the text encoder without much memory
RESULT = "batch_result"
RELIABLE = "batch_reliable"  # (image_reliable, evidence) of the last batch, for the table's headers


def _decode_all(items: list[Item]) -> tuple[list[tuple[Item, object]], list[Skipped]]:
    ok, skipped = [], []
    for item in items:
        try:
            ok.append((item, decode_image(item.data, filename=item.name)))
        except ImageDecodeError as exc:
            skipped.append(Skipped(item.name, str(exc)))
    return ok, skipped


def score(items: list[Item], texts: dict[str, tuple[str, str]], progress, *,
          keep_names: bool = False) -> tuple[list[dict], list[Skipped]]:
    """Decode, fit each text to the encoder's window, predict in batches of BATCH_SIZE, log each
    batch in one transaction; returns result rows and skips."""
    n = len(items)
    progress.progress(0.0, text=f"Reading {n} images…")
    decoded, skipped = _decode_all(items)
    progress.progress(0.0, text="Loading the model (first use only)…")
    model, db, rows = predictor(), store(), []
    for start in range(0, len(decoded), BATCH_SIZE):
        chunk = decoded[start:start + BATCH_SIZE]
        studies = [Study(dec.gray, item.data, item.name, *texts.get(item.name, ("", "none")),
                         colorfulness=dec.colorfulness) for item, dec in chunk]
        results = predict_and_log_many(model, db, studies, source="batch", keep_names=keep_names, lock=MODEL_LOCK)
        if results[0].log_error is not None:  # one transaction per chunk: all logged or none
            skipped += [Skipped(item.name, f"scored but not logged: {results[0].log_error}") for item, _ in chunk]
        for logged in results:
            pred, pid, window = logged.prediction, logged.row_id, logged.window
            rows.append({"id": pid, "file": logged.entry["image_name"],
                         "above threshold": ", ".join(pred.positive("fusion")) if not pred.out_of_distribution
                         else "(out of distribution)",
                         "discordant": ", ".join(pred.discordant), "OOD": pred.out_of_distribution,
                         "mode": pred.text_mode, **pred.fusion,  # the model's findings
                         "text cut": "IMPRESSION kept" if window and window.impression_first
                         else ("end not read" if window and window.truncated else "")})
            if len(rows) == 1:
                st.session_state[RELIABLE] = (pred.image_reliable, pred.evidence)
        done = min(start + BATCH_SIZE, len(decoded))
        progress.progress(done / max(len(decoded), 1), text=f"Scored {done} of {len(decoded)} studies")
    return rows, skipped


def finding_columns(reliable: dict | None, evidence: dict | None) -> dict:
    """Column config per finding: 3 decimals; a finding not reliable from the image gets a ⚠
    in its header and its evidence in the header's tooltip."""
    unreliable = unreliable_findings(reliable, evidence)
    return {f: st.column_config.NumberColumn(
        f + (" ⚠" if f in unreliable else ""), format="%.3f",
        help=(f"Not reliable from the image: {unreliable[f]}" if f in unreliable else None))
        for f in (reliable or FINDINGS)}  # the model's findings (its image_reliable has every one)


def render(model_ready: bool) -> None:
    st.markdown("Upload several images or a `.zip` of them (read in memory; non-images are skipped "
                "and listed). Optionally add a CSV with columns `file,text` (and `mode`: report, "
                "indication or none) to give each study its text; studies without a row are scored "
                "from the image alone.")
    files = st.file_uploader("Images or .zip", type=["png", "jpg", "jpeg", "dcm", "dicom", "zip"],
                             accept_multiple_files=True, key="batch_files", max_upload_size=MAX_UPLOAD_MB)
    mapping = st.file_uploader("Text mapping CSV (optional)", type=["csv"], key="batch_csv", max_upload_size=5)
    default_mode = st.radio("Mode for CSV rows without one", [m for m in TEXT_MODES if m != "none"],
                            horizontal=True, key="batch_default_mode")
    keep_names = st.checkbox("Keep the original file names in the log", key="batch_keep_names",
                             help="Off (default): the log, the history and the export name each file "
                                  "'upload-<hash>'. The CSV above is matched on the original names either way.")
    if not model_ready:
        st.caption("Scoring needs a trained model (see above).")
        return
    if st.button("Score", type="primary", disabled=not files, key="batch_go"):
        st.session_state.pop(RESULT, None)
        try:
            texts = read_text_map(mapping.getvalue(), default_mode=default_mode) if mapping else {}
        except CsvError as exc:
            st.error(f"Text mapping CSV: {exc}")
            return
        items, skipped = expand_uploads([(f.name, f.getvalue()) for f in files])
        unknown = sorted(set(texts) - {i.name for i in items})
        if not items:
            st.error("Nothing to score: no image among the uploads.")
            rows = []
        else:
            try:
                rows, more = score(items, texts, st.progress(0.0, text=f"Scoring {len(items)} studies…"),
                                   keep_names=keep_names)
            except CxrError as exc:  # weights that fail to load, an unusable log: one line, no traceback
                st.error(f"The model could not score the batch: {exc}")
                return
            skipped += more
        st.session_state[RESULT] = {"rows": rows, "skipped": skipped, "unknown": unknown}
    result = st.session_state.get(RESULT)
    if result:
        if result["rows"]:
            st.success(f"Scored and logged {len(result['rows'])} studies.")
            reliable, evidence = st.session_state.get(RELIABLE) or (None, None)
            st.dataframe(pd.DataFrame(result["rows"]), hide_index=True,
                         column_config=finding_columns(reliable, evidence))
            reliability_caption(unreliable_findings(reliable, evidence))
        if result["skipped"]:
            st.warning(f"Skipped {len(result['skipped'])} entries:")
            st.dataframe(pd.DataFrame([vars(s) for s in result["skipped"]]), hide_index=True)
        if result["unknown"]:
            st.caption("CSV rows with no matching upload: " + ", ".join(result["unknown"][:20]))
