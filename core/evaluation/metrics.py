"""Evaluation metrics: AUC with bootstrap confidence intervals, AUPRC, calibration."""
from __future__ import annotations

import numpy as np


# sklearn costs ~0.6 s to import and the predictor (the app's first prediction) never needs it
def roc_auc_score(*args, **kwargs):
    from sklearn.metrics import roc_auc_score as score
    return score(*args, **kwargs)


def average_precision_score(*args, **kwargs):
    from sklearn.metrics import average_precision_score as score
    return score(*args, **kwargs)


def roc_curve(*args, **kwargs):
    from sklearn.metrics import roc_curve as curve
    return curve(*args, **kwargs)


def safe_auc(y: np.ndarray, p: np.ndarray) -> float:
    """AUC, or NaN when only one class is present."""
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, p))


def macro_auc(Y: np.ndarray, P: np.ndarray) -> float:
    aucs = [safe_auc(Y[:, k], P[:, k]) for k in range(Y.shape[1])]
    return float(np.nanmean(aucs)) if not all(np.isnan(aucs)) else float("nan")


def _resampled_per_finding(Y: np.ndarray, stat, *, n_boot: int, seed: int) -> np.ndarray:
    """n_boot x findings: ``stat(y, idx, j)`` on each bootstrap resample of the studies (rows),
    NaN where the resample holds one class only."""
    rng = np.random.default_rng(seed)
    n, k = Y.shape
    per = np.full((n_boot, k), np.nan)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        for j in range(k):
            y = Y[idx, j]
            if y.min() != y.max():
                per[b, j] = stat(y, idx, j)
    return per


def bootstrap_auc_ci(Y: np.ndarray, P: np.ndarray, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05):
    """95% percentile bootstrap over studies: (per-finding [lo, hi] list, macro [lo, hi])."""
    per = _resampled_per_finding(Y, lambda y, idx, j: roc_auc_score(y, P[idx, j]), n_boot=n_boot, seed=seed)
    k = Y.shape[1]
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)
    finding_ci = [[float(np.nanpercentile(per[:, j], lo)), float(np.nanpercentile(per[:, j], hi))] for j in range(k)]
    macro = np.nanmean(per, axis=1)
    return finding_ci, [float(np.nanpercentile(macro, lo)), float(np.nanpercentile(macro, hi))]


def paired_macro_auc_difference(Y: np.ndarray, P_a: np.ndarray, P_b: np.ndarray, *, n_boot: int = 1000,
                                seed: int = 0, alpha: float = 0.05) -> tuple[float, list[float]]:
    """Macro AUC of A minus that of B on the same studies, with a 95% paired bootstrap CI
    (both scored on each resample, so study-to-study noise shared by A and B cancels)."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(Y), len(Y))
        diffs.append(macro_auc(Y[idx], P_a[idx]) - macro_auc(Y[idx], P_b[idx]))
    lo, hi = np.nanpercentile(diffs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return macro_auc(Y, P_a) - macro_auc(Y, P_b), [float(lo), float(hi)]


def paired_auc_differences(Y: np.ndarray, P_a: np.ndarray, P_b: np.ndarray, *, n_boot: int = 1000,
                           seed: int = 0, alpha: float = 0.05) -> dict:
    """Per finding (columns) and macro: AUC of A minus that of B on the same studies, each with
    a 95% paired bootstrap CI. {"findings": [(diff, [lo, hi]), ...], "macro": (diff, [lo, hi])}."""
    per = _resampled_per_finding(Y, lambda y, idx, j: roc_auc_score(y, P_a[idx, j]) - roc_auc_score(y, P_b[idx, j]),
                                 n_boot=n_boot, seed=seed)
    k = Y.shape[1]
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    point = [safe_auc(Y[:, j], P_a[:, j]) - safe_auc(Y[:, j], P_b[:, j]) for j in range(k)]
    findings = [(float(point[j]), [float(x) for x in np.nanpercentile(per[:, j], q)]) for j in range(k)]
    macro = (macro_auc(Y, P_a) - macro_auc(Y, P_b), [float(x) for x in np.nanpercentile(np.nanmean(per, 1), q)])
    return {"findings": findings, "macro": macro}


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    return float(average_precision_score(y, p)) if y.max() > 0 else float("nan")


def ece(y: np.ndarray, p: np.ndarray, *, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width bins."""
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / len(y))


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (0.5 if one class only)."""
    if y.min() == y.max():
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    i = int(np.argmax(tpr - fpr))
    return float(min(max(thr[i], 1e-6), 1 - 1e-6))


def fit_temperature(y: np.ndarray, logits: np.ndarray) -> float:
    """Scalar temperature minimising the log loss of sigmoid(logits / T) (grid + refine)."""
    def nll(t):
        z = logits / t
        return float(np.mean(np.logaddexp(0, z) - y * z))
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 200))
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = np.linspace(best * 0.9, best * 1.1, 41)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def wilson_ci(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson interval of a proportion k/n (None when n = 0)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]
