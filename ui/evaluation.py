"""Read the evaluation files in <weights>/eval/ (written by scripts/evaluate.py and train.py)
into tables and curves for the model card. Pure: no Streamlit."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from core.labels import FINDINGS

BASELINE = "test_keyword_baseline"
# the honest tasks first: image only, then image + indication; report mode (inflated) last
MODE_ORDER = ("none", "indication", "report")
HEAD_ORDER = {"none": ("image", "fusion", "text"), "indication": ("fusion", "image", "text"),
              "report": ("fusion", "image", "text")}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def fmt_ci(value, ci) -> str:
    """'0.84 (0.78–0.90)'; '—' when not computable (no positives in the split)."""
    if not _finite(value):
        return "—"
    lo, hi = (list(ci) + [None, None])[:2] if ci else (None, None)
    return f"{value:.2f} ({lo:.2f}–{hi:.2f})" if _finite(lo) and _finite(hi) else f"{value:.2f}"


def load_results(folder: Path) -> dict[str, dict]:
    """file stem -> parsed JSON for every eval/*.json (NaN allowed, as json writes it)."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def metrics_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per text mode × head: macro AUC, per-finding AUC with 95% CI, mean ECE."""
    rows = []
    for mode in MODE_ORDER:
        for head in HEAD_ORDER[mode]:
            r = results.get(f"test_{mode}_{head}")
            if not r:
                continue
            row = {"text mode": mode, "head": head, "studies": r.get("n_studies"),
                   "macro AUC (95% CI)": fmt_ci(r.get("macro_auc"), r.get("macro_auc_ci"))}
            for f in FINDINGS:
                row[f] = fmt_ci((r.get("auc") or {}).get(f), (r.get("auc_ci") or {}).get(f))
            row["mean ECE"] = f"{r['mean_ece']:.3f}" if _finite(r.get("mean_ece")) else "—"
            rows.append(row)
    return pd.DataFrame(rows)


def summary_table(summary: dict) -> pd.DataFrame:
    """Fallback from metadata['test_summary'] ('mode/head' -> auc, macro_auc, macro_auc_ci, mean_ece)."""
    rows = []
    for key, s in summary.items():
        mode, _, head = key.partition("/")
        row = {"text mode": mode, "head": head, "macro AUC (95% CI)": fmt_ci(s.get("macro_auc"), s.get("macro_auc_ci"))}
        row.update({f: fmt_ci((s.get("auc") or {}).get(f), None) for f in FINDINGS})
        row["mean ECE"] = f"{s['mean_ece']:.3f}" if _finite(s.get("mean_ece")) else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def positives_table(results: dict[str, dict]) -> pd.DataFrame | None:
    """Positives per finding in the test split (the same for every mode and head)."""
    for r in results.values():
        if r.get("n_positive"):
            return pd.DataFrame([{"studies": r.get("n_studies"), **r["n_positive"]}])
    return None


def prediction_files(folder: Path) -> dict[str, Path]:
    """'mode/head' -> test_{mode}_{head}.csv for those present."""
    out = {}
    for mode in MODE_ORDER:
        for head in HEAD_ORDER[mode]:
            path = Path(folder) / f"test_{mode}_{head}.csv"
            if path.is_file():
                out[f"{mode}/{head}"] = path
    return out


def curves(path: Path, *, bins: int = 10) -> tuple[dict, dict, list[str]]:
    """ROC (finding -> fpr, tpr, auc) and reliability (finding -> mean predicted, observed)
    from a predictions CSV with <finding> and label_<finding> columns; plus findings skipped."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_auc_score, roc_curve

    frame = pd.read_csv(path)
    roc, rel, skipped = {}, {}, []
    for f in FINDINGS:
        label = f"label_{f}"
        if f not in frame or label not in frame:
            skipped.append(f"{f} (no columns)")
            continue
        part = frame[[f, label]].dropna()
        y, p = part[label].astype(int).to_numpy(), part[f].astype(float).to_numpy()
        if len(np.unique(y)) < 2:
            skipped.append(f"{f} (only one class in the split)")
            continue
        fpr, tpr, _ = roc_curve(y, p)
        roc[f] = (fpr, tpr, roc_auc_score(y, p))
        obs, pred = calibration_curve(y, p, n_bins=bins, strategy="quantile")
        rel[f] = (pred, obs)
    return roc, rel, skipped
