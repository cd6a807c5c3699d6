"""Turn a prediction into a log row and into tables (no Streamlit here)."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from core.imaging import encode_png, thumbnail
from core.labels import FINDINGS
from core.store import MAX_REVIEW_PX, PredictionStore, hashed_name, safe_name


def log_entry(pred, *, gray: np.ndarray, image_bytes: bytes, image_name: str, text: str, source: str,
              keep_name: bool = True) -> dict:
    """One successful prediction as keyword arguments of ``PredictionStore.log_prediction``. The
    text is stored only when the model read it; ``keep_name=False`` stores a name made from the
    file's hash instead of the uploaded file's own (see core.store.hashed_name)."""
    read_text = text if pred.has_text else ""
    return dict(
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
        discordance_score=getattr(pred, "discordance_score", 0.0) or 0.0,
        evidence=getattr(pred, "evidence", None), image_reliable=getattr(pred, "image_reliable", None))


def log_prediction(store: PredictionStore, pred, *, gray: np.ndarray, image_bytes: bytes, image_name: str,
                   text: str, source: str, keep_name: bool = True) -> int:
    """Append one successful prediction to the log; returns its id (see ``log_entry``)."""
    return store.log_prediction(**log_entry(pred, gray=gray, image_bytes=image_bytes, image_name=image_name,
                                            text=text, source=source, keep_name=keep_name))


def shown_name(image_name: str, data: bytes, keep_name: bool) -> str:
    """The name the pages show and the log keeps for an upload."""
    return safe_name(image_name) if keep_name else hashed_name(image_name, data)


def heads_table(fusion: dict, image: dict, text: dict | None, thresholds: dict,
                head_thresholds: dict | None = None, discordant: list | None = None) -> pd.DataFrame:
    """One row per finding: each head's probability, the threshold, what is flagged."""
    rows = []
    for f in FINDINGS:
        row = {"finding": f, "fused": fusion[f], "threshold": thresholds[f],
               "fused ≥ threshold": "yes" if fusion[f] >= thresholds[f] else "no",
               "image head": image.get(f)}
        if text:
            row["text head"] = text.get(f)
        if head_thresholds:
            row["image thr."] = head_thresholds["image"][f]
            if text:
                row["text thr."] = head_thresholds["text"][f]
        if text is not None:
            row["discordant"] = "yes" if f in (discordant or []) else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("finding")


def history_frame(rows: list[dict]) -> pd.DataFrame:
    """The review table: one row per logged prediction; what needs attention (out of
    distribution, discordance) comes before the probabilities, so it is never off-screen."""
    out = []
    for r in rows:
        flags = (["⚠ out of distribution"] if r["out_of_distribution"] else []) + \
            (["discordant: " + ", ".join(r["discordant"])] if r["discordant"] else [])
        row = {"id": r["id"], "created (UTC)": r["created_at"][:19].replace("T", " "), "flags": " · ".join(flags),
               "file": r["image_name"], "mode": r["text_mode"],
               "discordance score": r.get("discordance_score") or 0.0}
        row.update({f: r["fusion"].get(f) for f in FINDINGS})
        row.update({"reviewed": r.get("reviewed", False), "source": r["source"], "note": r.get("note", "")})
        out.append(row)
    columns = ["id", "created (UTC)", "flags", "file", "mode", "discordance score", *FINDINGS, "reviewed", "source",
               "note"]
    return pd.DataFrame(out, columns=columns)
