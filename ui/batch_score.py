"""Batch review, part (a): score many studies at once and log every one (source='batch')."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.images import ImageDecodeError, decode_image
from core.data.labels import FINDINGS, TextMode
from core.errors import CxrError
from core.serving.batch_uploads import CsvError, Item, Skipped, TextRow, expand_uploads, read_text_map
from core.serving.predict_and_log import Study, predict_and_log_many
from ui import decision_view
from ui.config import MAX_UPLOAD_MB
from ui.prediction_view import reliability_caption, unreliable_findings
from ui.resources import predictor, store
from ui.sidebar import chosen_target

BATCH_SIZE = 8  # studies per model call: amortises the text encoder without much memory
YOUR_FILE, YOUR_ID = "your file", "your ID"  # in this page and its download only, never in the log
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


def score(items: list[Item], texts: dict[str, TextRow], progress, *,
          keep_names: bool = False, target: str | None = None) -> tuple[list[dict], list[Skipped]]:
    """Decode, fit each text to the encoder's window, predict in batches of BATCH_SIZE, decide at
    ``target`` (None: each mode's default), log each batch in one transaction; returns result rows
    and skips. The rows carry the user's own file name and ID for this page and its download; the
    log keeps only what ``keep_names`` says."""
    n = len(items)
    progress.progress(0.0, text=f"Reading {n} images…")
    decoded, skipped = _decode_all(items)
    progress.progress(0.0, text="Loading the model (first use only)…")
    model, db, rows = predictor(), store(), []
    for start in range(0, len(decoded), BATCH_SIZE):
        chunk = decoded[start:start + BATCH_SIZE]
        asked = [texts.get(item.name, TextRow()) for item, _ in chunk]
        studies = [Study(dec.gray, item.data, item.name, row.text, row.mode, colorfulness=dec.colorfulness)
                   for (item, dec), row in zip(chunk, asked, strict=True)]
        results = predict_and_log_many(model, db, studies, source="batch", keep_names=keep_names,
                                       target=target)
        if results[0].log_error is not None:  # one transaction per chunk: all logged or none
            skipped += [Skipped(item.name, f"scored but not logged: {results[0].log_error}") for item, _ in chunk]
        for logged, (item, _), row in zip(results, chunk, asked, strict=True):
            pred, pid, window = logged.prediction, logged.row_id, logged.window
            rows.append(result_row(pred, pid=pid, name=logged.entry.image_name if logged.entry else item.name,
                                   window=window, your_file=item.name, your_id=row.user_id))
            if len(rows) == 1:
                # "reliable from the image" quotes image-only evidence (the image head), whatever the mode
                st.session_state[RELIABLE] = (pred.image_reliable, pred.head_evidence.get("image"))
        done = min(start + BATCH_SIZE, len(decoded))
        progress.progress(done / max(len(decoded), 1), text=f"Scored {done} of {len(decoded)} studies")
    return rows, skipped


def result_row(pred, *, pid, name: str, window, your_file: str, your_id: str) -> dict:
    """One scored study as the results table and its download show it: what is flagged at which operating
    point first (core.serving.decision, as the prediction carries it), then the number of each assessed,
    calibrated finding (None: not assessed or not calibrated; no flag and no number either way)."""
    decisions = decision_view.from_prediction(pred)
    return {"id": pid, "file": name,
            "flagged": decision_view.flagged_cell(decisions),
            # report QA exists in report mode only: elsewhere there is nothing to show
            "discordant": ", ".join(pred.discordant) if pred.text_mode == TextMode.REPORT else None,
            "OOD": pred.out_of_distribution,
            "mode": pred.text_mode, "operating point": decisions.operating_point,
            **{d.finding: decision_view.cell(d) for d in decisions},
            "not assessed": ", ".join(decisions.not_assessed()),
            "text cut": "IMPRESSION kept" if window and window.impression_first
            else ("end not read" if window and window.truncated else ""),
            YOUR_FILE: your_file, YOUR_ID: your_id}


def display_frame(rows: list[dict], findings) -> pd.DataFrame:
    """The results as the page shows them: the user's own names, then what is flagged and what needs
    attention (out of distribution, discordance), then the numbers (never pushing those off-screen), the log's
    id and name last; a finding no row has a number for, and other empty columns, are left out."""
    frame = pd.DataFrame(rows)
    numbers = [f for f in (findings or FINDINGS) if f in frame and frame[f].notna().any()]
    hidden = [f for f in (findings or FINDINGS) if f in frame and f not in numbers]
    first = [YOUR_FILE, YOUR_ID, "mode", "flagged", "OOD", "discordant", *numbers, "operating point", "text cut"]
    frame = frame[[c for c in first if c in frame] + [c for c in frame.columns if c not in first and c not in hidden]]
    if "discordant" in frame and frame["discordant"].isna().all():  # no study in report mode: no report QA
        frame = frame.drop(columns="discordant")
    if "OOD" in frame and not frame["OOD"].any():  # every image in distribution: the caption says so
        frame = frame.drop(columns="OOD")
    for column in (YOUR_ID, "not assessed", "text cut"):
        if column in frame and (frame[column].isna().all() or (frame[column] == "").all()):
            frame = frame.drop(columns=column)
    # text cells, never Streamlit's grey "None": a number to 3 decimals or '—'; no report QA outside report mode
    for f in numbers:
        frame[f] = [decision_view.number_text(v) for v in frame[f]]
    if "discordant" in frame:
        frame["discordant"] = [decision_view.NO_NUMBER if pd.isna(v) else v for v in frame["discordant"]]
    return frame


def display_columns(frame: pd.DataFrame, reliable: dict | None, evidence: dict | None) -> dict:
    """Column config of the displayed results: what is flagged and discordant wide enough to read whole; a
    finding not reliable from the image marked ⚠ with its evidence on hover (its cells are text: a number to
    3 decimals or '—')."""
    unreliable = unreliable_findings(reliable, evidence)
    config = {c: st.column_config.TextColumn(c, width="medium") for c in ("flagged", "discordant") if c in frame}
    for f in unreliable:
        if f in frame:
            config[f] = st.column_config.TextColumn(f + " ⚠", help=f"Not reliable from the image: {unreliable[f]}.")
    return config


def hidden_findings(rows: list[dict], findings) -> list[str]:
    """The findings whose probability no row shows (not assessed or not calibrated: the cell is empty)."""
    return [f for f in (findings or FINDINGS) if rows and all(r.get(f) is None for r in rows)]


def empty_cells_caption(rows: list[dict], findings) -> str:
    """What a '—' or a missing column means (never 'absent')."""
    hidden = hidden_findings(rows, findings)
    ood = sum(1 for r in rows if r.get("OOD"))
    parts = []
    if hidden:
        parts.append(f"No column for {', '.join(hidden)}: no study here has a number for it (not assessed from the "
                     "image in image-only and indication modes, or not calibrated).")
    parts.append("A number: the calibrated probability of an assessed finding; '—': not assessed, or no calibrated "
                 "number. **flagged** has every decision, at the row's **operating point**.")
    parts.append(f"{ood} of {len(rows)} images out of distribution (nothing assessed for them)." if ood
                 else "No image was out of distribution.")
    if any(r.get("discordant") is not None for r in rows) and any(r.get("discordant") is None for r in rows):
        parts.append("discordant '—': report QA exists in report mode only.")
    return " ".join(parts)


def results_csv(rows: list[dict]) -> bytes:
    """This batch's results as the user downloads them: their own file names and IDs first."""
    frame = pd.DataFrame(rows)
    first = [YOUR_FILE, YOUR_ID, "id", "file"]
    return frame[first + [c for c in frame.columns if c not in first]].to_csv(index=False).encode()


def render(model_ready: bool) -> None:
    st.markdown("Upload several images or a `.zip` of them (read in memory; non-images are skipped "
                "and listed). Optionally add a CSV with columns `image,text,text_mode,id` (as "
                "`scripts/predict.py --batch` takes): each study's text, how it is read (report, "
                "indication or none; a row with text and no mode is an indication) and your own study ID, "
                "shown with the results and in their download, never logged. Studies without a row are "
                "scored from the image alone.")
    files = st.file_uploader("Images or .zip", type=["png", "jpg", "jpeg", "dcm", "dicom", "zip"],
                             accept_multiple_files=True, key="batch_files", max_upload_size=MAX_UPLOAD_MB)
    mapping = st.file_uploader("Text mapping CSV (optional)", type=["csv"], key="batch_csv", max_upload_size=5)
    keep_names = st.checkbox("Keep the original file names in the log", key="batch_keep_names",
                             help="Off (default): the log, the history and the export name each file "
                                  "'upload-<hash>'. The CSV above is matched on the original names either way.")
    if not model_ready:
        st.caption("Scoring needs a trained model (see above).")
        return
    if st.button("Score", type="primary", disabled=not files, key="batch_go"):
        st.session_state.pop(RESULT, None)
        try:
            texts = read_text_map(mapping.getvalue()) if mapping else {}
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
                                   keep_names=keep_names, target=chosen_target())
            except CxrError as exc:  # weights that fail to load, an unusable log: one line, no traceback
                st.error(f"The model could not score the batch: {exc}")
                return
            skipped += more
        st.session_state[RESULT] = {"rows": rows, "skipped": skipped, "unknown": unknown}
    result = st.session_state.get(RESULT)
    if result:
        if result["rows"]:
            points = sorted({r["operating point"] for r in result["rows"]})
            st.success(f"Scored and logged {len(result['rows'])} studies, decided at {' and '.join(points)}.")
            reliable, evidence = st.session_state.get(RELIABLE) or (None, None)
            frame = display_frame(result["rows"], reliable)
            st.dataframe(frame, hide_index=True, column_config=display_columns(frame, reliable, evidence))
            st.caption(empty_cells_caption(result["rows"], reliable))
            reliability_caption({f: line for f, line in unreliable_findings(reliable, evidence).items()
                                 if f in frame})
            st.download_button("Download these results (CSV, with your file names and IDs)",
                               data=results_csv(result["rows"]), file_name="batch-results.csv", mime="text/csv",
                               icon=":material/download:", key="batch_download")
            st.caption(f"`{YOUR_FILE}` and `{YOUR_ID}` stay in this page and the download; the log keeps "
                       "the name in `file`.")
        if result["skipped"]:
            st.warning(f"Skipped {len(result['skipped'])} entries:")
            st.dataframe(pd.DataFrame([vars(s) for s in result["skipped"]]), hide_index=True)
        if result["unknown"]:
            st.caption("CSV rows with no matching upload: " + ", ".join(result["unknown"][:20]))
