"""The evaluation files in <weights>/eval/: their names, reading them back, and the ROC and
reliability curves of their per-study predictions. Written by scripts/train.py (core.training.outputs),
scripts/evaluate.py and scripts/cv.py; read by the model card, core.evaluation.evidence and
scripts/results_table.py.

    eval_name("test", "none", "image")   # 'test_none_image': .json (metrics) and .csv (per-study)
"""
from __future__ import annotations

import json
from pathlib import Path

from core.data.labels import FINDINGS, HEADS, TEXT_MODES
from core.errors import DataError

BASELINE = "test_keyword_baseline"
# the shipped model's raw (unmapped) val_/test_<mode>_<head>.csv, under <weights>/eval: written by
# scripts/recalibrate.py, read there and by the operating-point choice (no model run)
RECALIBRATION_INPUTS = "recalibration_inputs"
# the honest tasks first: image only, then image + indication; report mode (inflated) last
MODE_ORDER = ("none", "indication", "report")
# image only: the image head first (the text head reads nothing); otherwise the fused head first
HEAD_ORDER = {m: (("image", *[h for h in HEADS if h != "image"]) if m == "none" else HEADS) for m in MODE_ORDER}


def eval_name(split: str, mode: str, head: str) -> str:
    """The stem of the metrics (.json) and per-study predictions (.csv) of one split, text mode
    and head: ``test_report_fusion``; external validation uses ``external_<dataset>`` as split."""
    return f"{split}_{mode}_{head}"


def eval_pairs() -> list[tuple[str, str]]:
    """Every (text mode, head) that is evaluated: all but the text head in mode none, which
    has nothing to read."""
    return [(m, h) for m in TEXT_MODES for h in HEADS if not (h == "text" and m == "none")]


def load_results(folder: Path) -> dict[str, dict]:
    """file stem -> parsed JSON for every eval/*.json (NaN allowed, as json writes it)."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def prediction_files(folder: Path) -> dict[str, Path]:
    """'mode/head' -> the test split's per-study predictions (.csv) of those present."""
    out = {}
    for mode in MODE_ORDER:
        for head in HEAD_ORDER[mode]:
            path = Path(folder) / f"{eval_name('test', mode, head)}.csv"
            if path.is_file():
                out[f"{mode}/{head}"] = path
    return out


def curves(path: Path, *, bins: int = 10) -> tuple[dict, dict, list[str]]:
    """ROC (finding -> fpr, tpr, auc) and reliability (finding -> mean predicted, observed)
    from a predictions CSV with <finding> and label_<finding> columns; plus findings skipped."""
    import numpy as np
    import pandas as pd  # here: core.evaluation.evidence (on the predictor's path) reads only the names
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


class EvalFilesError(DataError):
    """An evaluation file does not hold what it should (other reports than the split)."""


def rewrite_probabilities(path: Path, uids, Q, findings) -> None:
    """A per-study CSV with its probability columns replaced (rows matched by uid), written in place."""
    import csv
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
        columns = list(rows[0].keys()) if rows else []
    at = {u: i for i, u in enumerate(uids)}
    if {r["uid"] for r in rows} != set(at):
        raise EvalFilesError(f"{path} holds other reports than the test split; re-run scripts/evaluate.py")
    for r in rows:
        for k, f in enumerate(findings):
            r[f] = f"{Q[at[r['uid']], k]:.6f}"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def recalibrate_test_files(eval_dir: Path, test_inputs: dict, recalibration, findings) -> None:
    """The test split's per-study CSVs and metrics through the weights' maps (what evaluate.py now gives):
    ``test_inputs``: (mode, head) -> (uids, raw P, Y)."""
    import numpy as np

    from core.evaluation.metrics import ece
    for (mode, head), (uids, P, Y) in test_inputs.items():
        csv_path = Path(eval_dir) / f"{eval_name('test', mode, head)}.csv"
        if not csv_path.is_file():
            continue
        Q = recalibration.apply(mode, head, P, findings)
        rewrite_probabilities(csv_path, uids, Q, findings)
        json_path = csv_path.with_suffix(".json")
        if json_path.is_file():
            res = json.loads(json_path.read_text())
            res["ece"] = {f: ece(Y[:, k], Q[:, k]) for k, f in enumerate(findings)}
            res["mean_ece"] = float(np.mean(list(res["ece"].values())))
            res["recalibrated"] = {f: recalibration.map_for(mode, head, f) is not None for f in findings}
            json_path.write_text(json.dumps(res, indent=2) + "\n")
