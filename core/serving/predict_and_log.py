"""Predict and log: the one path from a decoded upload to a row of the prediction log.

    from core.serving.predict_and_log import Study, predict_and_log
    done = predict_and_log(predictor, store, Study(gray, data, "cxr.png", text, "report"), source="predict")
    done.prediction, done.row_id          # row_id is None when the log refused the row (done.log_error)

The Predict page, batch scoring and the soak all come through here, so they decide the same
things the same way: the no-text rule (core.data.labels.effective_mode), the text the model reads
and the log keeps (fitted to the encoder's window, core.data.text_window), the image and text hashes,
the review thumbnail and the thresholds of every head.
"""
from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from core.data.images import encode_png, thumbnail
from core.data.labels import effective_mode
from core.data.text_window import TextWindow, fit_text
from core.serving.prediction import Prediction
from core.store import MAX_REVIEW_PX, LogEntry, PredictionStore, StoreError, hashed_name, safe_name


@dataclass
class Study:
    """One decoded upload and the text that came with it (already cleaned, core.data.text_clean)."""
    gray: np.ndarray            # H×W uint8 (core.data.images.DecodedImage.gray)
    image_bytes: bytes          # the upload as received: hashed, never stored
    image_name: str
    text: str = ""
    mode: str = "none"          # the mode asked for; the no-text rule may turn it into none
    colorfulness: float = 0.0


@dataclass
class Logged:
    prediction: Prediction
    row_id: int | None              # None when not logged (no store, or log_error)
    entry: LogEntry | None          # as handed to the store (log_entry); None without a store
    window: TextWindow | None       # what of the text was read; None in mode none
    log_error: StoreError | None = None


def shown_name(image_name: str, data: bytes, keep_name: bool) -> str:
    """The name the pages show and the log keeps for an upload."""
    return safe_name(image_name) if keep_name else hashed_name(image_name, data)


def log_entry(pred: Prediction, *, gray: np.ndarray, image_bytes: bytes, image_name: str, text: str, source: str,
              keep_name: bool = True) -> LogEntry:
    """One successful prediction as the log's entry (``PredictionStore.log_prediction``). The
    text is stored only when the model read it; ``keep_name=False`` stores a name made from the
    file's hash instead of the uploaded file's own (see core.store.hashed_name). The thresholds
    are every head's (the history shows each head against its own)."""
    read_text = text if pred.has_text else ""
    return LogEntry(
        model_version=pred.model,
        image_png=encode_png(thumbnail(gray, MAX_REVIEW_PX)),
        image_name=image_name if keep_name else hashed_name(image_name, image_bytes),
        original_name=keep_name,
        image_sha256=hashlib.sha256(image_bytes).hexdigest(),
        text=read_text,
        text_sha256=hashlib.sha256(read_text.encode("utf-8")).hexdigest() if read_text else None,
        text_mode=pred.text_mode,
        fusion=pred.fusion, image=pred.image, text_probs=pred.text if pred.has_text else None,
        thresholds=pred.head_thresholds, discordant=pred.discordant,
        out_of_distribution=pred.out_of_distribution, ood_score=pred.ood_score, source=source,
        discordance_score=pred.discordance_score, evidence=pred.evidence, image_reliable=pred.image_reliable,
        # the model's own findings: the log adds columns for new ones
        calibrated=pred.calibrated, findings=list(pred.fusion),
        # the decision the user was shown, at the operating point it was made at (core.serving.decision)
        decision=pred.decision, operating_point_name=pred.operating_point_name, operating_point=pred.operating_point,
        not_assessed=pred.not_assessed)


def read_window(predictor, study: Study) -> TextWindow | None:
    """The part of the study's text the model reads (None: image only, by the no-text rule)."""
    if effective_mode(study.text, study.mode) == "none":
        return None
    return fit_text(study.text, predictor.tokenizer, max_len=predictor.max_len)


def predict_and_log_many(predictor, store: PredictionStore | None, studies: list[Study], *, source: str,
                         keep_names: bool = False, lock=None, target: str | None = None) -> list[Logged]:
    """Predict the studies in one model call and log them in one transaction (all or none).
    ``store=None`` predicts without logging; ``lock``: held around the model call too (the
    Predictor serialises its own calls); ``target``: the operating point decided at (None: each mode's default). A store
    that refuses the rows does not lose the predictions: they come back
    with ``row_id=None`` and the error in ``log_error``."""
    windows = [read_window(predictor, s) for s in studies]
    texts = [w.read if w else "" for w in windows]
    modes = [effective_mode(t, s.mode) for t, s in zip(texts, studies, strict=True)]
    with lock if lock is not None else nullcontext():
        preds = predictor.predict_batch([s.gray for s in studies], texts, modes,
                                        colorfulness=[s.colorfulness for s in studies], target=target)
    if store is None:
        return [Logged(p, None, None, w) for p, w in zip(preds, windows, strict=True)]
    entries = [log_entry(p, gray=s.gray, image_bytes=s.image_bytes, image_name=s.image_name, text=t,
                         source=source, keep_name=keep_names)
               for p, s, t in zip(preds, studies, texts, strict=True)]
    try:
        ids, error = store.log_many(entries), None
    except StoreError as exc:
        ids, error = [None] * len(studies), exc
    return [Logged(p, i, e, w, error) for p, i, e, w in zip(preds, ids, entries, windows, strict=True)]


def predict_and_log(predictor, store: PredictionStore | None, study: Study, *, source: str,
                    keep_name: bool = False, lock=None, target: str | None = None) -> Logged:
    """One study (see ``predict_and_log_many``)."""
    return predict_and_log_many(predictor, store, [study], source=source, keep_names=keep_name, lock=lock,
                                target=target)[0]
