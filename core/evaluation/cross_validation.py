"""Cross-validation results: per-fold AUCs (mean ± sd) and pooled out-of-fold AUCs with CIs.

``scripts/cv.py`` writes ``fold<k>/oof_<mode>_<head>.csv`` (the format of
``core.evaluation.split_eval.write_predictions_csv``; where: ``core.evaluation.cv_layout``);
``summarise`` reads them back.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from core.data.labels import FINDINGS
from core.evaluation.cv_layout import CvLayout, oof_keys, oof_path
from core.evaluation.metrics import bootstrap_auc_ci, macro_auc, safe_auc


def read_predictions_csv(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(uids, probabilities N x F, labels N x F) from a predictions CSV."""
    with Path(path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    P = np.array([[float(r[f]) for f in FINDINGS] for r in rows]).reshape(-1, len(FINDINGS))
    Y = np.array([[int(r[f"label_{f}"]) for f in FINDINGS] for r in rows], dtype=float).reshape(-1, len(FINDINGS))
    return [r["uid"] for r in rows], P, Y


def _sd(values: list[float]) -> float:
    v = [x for x in values if x == x]
    return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


def summarise(root: Path, *, n_boot: int = 1000) -> dict | None:
    """Everything the finished folds under ``root`` say, or None when none has finished."""
    layout = CvLayout(root)
    done = layout.done_folds()
    if not done:
        return None
    folds_file = layout.folds_file
    n_folds = len(json.loads(folds_file.read_text())["folds"]) if folds_file.is_file() else len(done)
    keys = sorted({k for d in done for k in oof_keys(d)})
    results = {}
    for key in keys:
        per_fold, Ps, Ys = [], [], []
        for d in done:
            path = oof_path(d, key)
            if not path.is_file():
                continue
            _, P, Y = read_predictions_csv(path)
            per_fold.append([safe_auc(Y[:, k], P[:, k]) for k in range(len(FINDINGS))])
            Ps.append(P)
            Ys.append(Y)
        P, Y = np.concatenate(Ps), np.concatenate(Ys)
        ci, macro_ci = bootstrap_auc_ci(Y, P, n_boot=n_boot)
        arr = np.array(per_fold, dtype=float)
        macros = np.nanmean(arr, axis=1)
        mode, head = key.split("_", 1)
        results[key] = {
            "text_mode": mode, "head": head, "n_studies": int(len(Y)),
            "macro_fold_mean": float(np.mean(macros)), "macro_fold_sd": _sd(list(macros)),
            "macro_pooled": macro_auc(Y, P), "macro_pooled_ci": macro_ci,
            "findings": {f: {"fold_auc": [float(x) for x in arr[:, k]],
                             "fold_mean": float(np.nanmean(arr[:, k])), "fold_sd": _sd(list(arr[:, k])),
                             "pooled_auc": safe_auc(Y[:, k], P[:, k]), "pooled_ci": ci[k],
                             "positives": int(Y[:, k].sum())}
                         for k, f in enumerate(FINDINGS)},
        }
    return {"n_folds": n_folds, "n_folds_done": len(done), "folds_done": [d.name for d in done],
            "results": results}


def _fold_predictions(roots: list[Path], key: str, fold: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One fold's out-of-fold predictions of a recipe, or of an ensemble of recipes (several
    roots): their probabilities averaged, on the reports all of them scored."""
    runs = [read_predictions_csv(oof_path(Path(root) / fold, key)) for root in roots]
    rows = [{u: i for i, u in enumerate(uids)} for uids, _, _ in runs]  # each member's row of a report
    uids = [u for u in runs[0][0] if all(u in r for r in rows)]
    mean = np.mean([probs[[r[u] for u in uids]] for (_, probs, _), r in zip(runs, rows, strict=True)], axis=0)
    return uids, mean, runs[0][2][[rows[0][u] for u in uids]]


def _side_name(roots: list[Path], key: str) -> str:
    return "+".join(str(r) for r in roots) + f":{key}"


def compare(root_a: Path | list[Path], key_a: str, root_b: Path | list[Path], key_b: str, *,
            n_boot: int = 1000) -> dict:
    """Recipe A's out-of-fold predictions (``oof_<key_a>.csv`` under ``root_a``) against B's, on
    the folds both have finished and the reports both scored: per finding and macro, A's AUC
    minus B's with a paired bootstrap CI (the same held-out reports, so their shared noise
    cancels). Folds are the same when both runs used the same fold seed and split (scripts/cv.py).
    A list of roots is an ensemble: its members' probabilities averaged."""
    from core.evaluation.metrics import paired_auc_differences
    roots_a = [Path(r) for r in (root_a if isinstance(root_a, list) else [root_a])]
    roots_b = [Path(r) for r in (root_b if isinstance(root_b, list) else [root_b])]
    folds = sorted(set.intersection(*(CvLayout(r).folds_with(k)
                                      for r, k in [(r, key_a) for r in roots_a] + [(r, key_b) for r in roots_b])))
    if not folds:
        return {"folds": [], "n_studies": 0}
    rows_a, rows_b = [], []
    for fold in folds:
        ua, Pa, Ya = _fold_predictions(roots_a, key_a, fold)
        ub, Pb, _ = _fold_predictions(roots_b, key_b, fold)
        at_b = {u: i for i, u in enumerate(ub)}
        keep = [i for i, u in enumerate(ua) if u in at_b]
        rows_a.append((Pa[keep], Ya[keep]))
        rows_b.append(Pb[[at_b[ua[i]] for i in keep]])
    Pa = np.concatenate([p for p, _ in rows_a])
    Y = np.concatenate([y for _, y in rows_a])
    Pb = np.concatenate(rows_b)
    diff = paired_auc_differences(Y, Pa, Pb, n_boot=n_boot)
    return {"folds": folds, "n_studies": int(len(Y)), "a": _side_name(roots_a, key_a), "b": _side_name(roots_b, key_b),
            "macro": {"a": macro_auc(Y, Pa), "b": macro_auc(Y, Pb), "diff": diff["macro"][0],
                      "diff_ci": diff["macro"][1]},
            "findings": {f: {"a": safe_auc(Y[:, k], Pa[:, k]), "b": safe_auc(Y[:, k], Pb[:, k]),
                             "diff": diff["findings"][k][0], "diff_ci": diff["findings"][k][1],
                             "positives": int(Y[:, k].sum())}
                         for k, f in enumerate(FINDINGS)}}
