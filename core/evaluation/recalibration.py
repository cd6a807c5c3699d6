"""Recalibration: a Platt map per text mode, head and finding, and how to measure calibration.

The model's probabilities are temperature-scaled on validation, which fixes their offset but
not their *spread*: on unseen reports the supported findings were about twice too high where
it matters (issue 20: Edema mean predicted 0.52 where 0.13 were positive; calibration slopes
0.5-0.8). A Platt map on the logit fixes slope and offset together:

    p' = sigmoid(a * logit(p) + b)          a > 0, fitted by logistic regression (L2 = 1 on a)

Where the fitting data holds fewer than ``MIN_POSITIVES`` positives (or negatives) a finding
gets no map and is marked "cannot be calibrated": two parameters need about ten events each
(the events-per-variable rule of logistic regression); with the 4-12 validation positives of
Pneumonia, Consolidation and Edema the fitted slope's 95% interval spans most of (0, 2).
The product shows no bare probability for such a finding. A map with a <= 0 (the score does
not rank the finding) is not kept either.

The map is monotone, so a threshold carried through the same map keeps every decision:
``p >= t`` if and only if ``map(p) >= map(t)`` (``map_thresholds``).

Measurement (``measure``): the calibration slope and intercept (logistic regression of the
outcome on logit(p): slope 1 and intercept 0 is calibrated, a slope under 1 means too spread
out, too confident) with bootstrap 95% CIs, and the top bin: among predictions >= 0.3, their
number, mean prediction and observed rate with a Wilson 95% CI. A mean ECE is not used: with
findings at 1-10% prevalence most reports sit in the lowest bin, so it stays small whatever
the top bins do.

Honest protocol (``cross_fitted``): a map is never fitted on the reports it is measured on.

- ``within`` (the protocol of the shipped map): each fold's out-of-fold predictions come from
  that fold's own model; they are split into ``inner`` parts (stratified by label, by report),
  and each part is recalibrated with the map fitted on that model's *other* parts. That is
  what shipping does: a model's map is fitted on its own held-out (validation) predictions.
- ``across``: fold k is recalibrated with the map fitted on the *other folds'* predictions,
  which come from other models of the same recipe; it measures whether one map transfers
  between training runs (it does not where the runs land at different offsets).

Torch-free and sklearn-free (numpy only): the predictor applies the map on its path.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from core.errors import CxrError
from core.evaluation.metrics import wilson_ci
from core.model.description_blocks import DiscordancePoints
from core.model.recalibration_maps import (  # the typed maps the weights carry; re-exported for the fitting code
    Maps,
    NotCalibrated,
    PlattMap,
    Recalibration,
    logit,
    sigmoid,
)

MIN_POSITIVES = 20        # of the rarer class in the fitting data; below it: "cannot be calibrated"
L2 = 1.0                  # ridge on the slope of the map (sklearn's C = 1); the offset is not penalised
TOP_CUT = 0.3             # the top bin: predictions >= 0.3, where a probability starts to matter
SLOPE_BAND = (0.8, 1.25)  # the calibration slope the issue asks for
TOP_TOLERANCE = 0.25      # the top bin's observed rate within 25% of its mean prediction
# the two honest tasks (text mode, head); report mode reads the labels' source, see split_eval
TASKS = {"image only": ("none", "image"), "image + indication": ("indication", "fusion")}


class RecalibrationError(CxrError, ValueError):
    """The recalibration cannot be fitted or measured as asked (overlapping fit and measure sets,
    mismatched predictions)."""


# -- logistic regression on one feature, many at once (bootstrap resamples as weights) ---------
def _logistic(z: np.ndarray, y: np.ndarray, w: np.ndarray, *, l2: float = 0.0, iters: int = 50,
              init: tuple[float, float] = (1.0, 0.0), tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Weighted logistic regression of y on (z, 1) for each row of ``w`` (B x n weights):
    (slope[B], intercept[B]) by damped Newton from ``init``; NaN where it does not converge
    (separation)."""
    B = w.shape[0]
    a, b = np.full(B, float(init[0])), np.full(B, float(init[1]))
    ridge = l2 + 1e-9

    def loss(a_, b_):
        eta = a_[:, None] * z[None, :] + b_[:, None]
        return (w * (np.logaddexp(0.0, eta) - y[None, :] * eta)).sum(1) + 0.5 * l2 * a_ ** 2

    cur = loss(a, b)
    for _ in range(iters):
        mu = sigmoid(a[:, None] * z[None, :] + b[:, None])
        r = w * (mu - y[None, :])
        s = w * mu * (1 - mu)
        ga, gb = (r * z).sum(1) + l2 * a, r.sum(1)
        haa, hab, hbb = (s * z * z).sum(1) + ridge, (s * z).sum(1), s.sum(1) + 1e-9
        det = haa * hbb - hab ** 2
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        step = np.ones(B)
        for _ in range(20):  # halve the step where the loss would increase
            na, nb = a - step * da, b - step * db
            new = loss(na, nb)
            bad = ~(new <= cur + 1e-12)
            if not bad.any():
                break
            step[bad] /= 2
        move = np.maximum(np.abs(na - a), np.abs(nb - b))
        keep = ~bad
        a, b, cur = np.where(keep, na, a), np.where(keep, nb, b), np.where(keep, new, cur)
        if np.nanmax(np.where(keep, move, 0.0)) < tol:
            break
    bad = ~np.isfinite(a) | ~np.isfinite(b) | (np.abs(a) > 50) | (np.abs(b) > 50)
    return np.where(bad, np.nan, a), np.where(bad, np.nan, b)


def fit_platt(y, p, *, min_positives: int = MIN_POSITIVES, l2: float = L2) -> PlattMap | None:
    """The Platt map of one finding from (labels, probabilities), or None when it cannot be
    calibrated: fewer than ``min_positives`` of the rarer class, or no positive slope."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    n_pos = int(y.sum())
    if min(n_pos, len(y) - n_pos) < min_positives:
        return None
    a, b = _logistic(logit(p), y, np.ones((1, len(y))), l2=l2)
    if not np.isfinite(a[0]) or a[0] <= 0:
        return None
    return PlattMap(a=float(a[0]), b=float(b[0]), positives=n_pos, n=len(y))


def cannot_calibrate_reason(y, *, min_positives: int = MIN_POSITIVES) -> str:
    n_pos = int(np.sum(y))
    if min(n_pos, len(y) - n_pos) < min_positives:
        return f"{n_pos} positives in {len(y)} fitting reports (fewer than {min_positives})"
    return "the score does not rank this finding (fitted slope <= 0)"


# -- the maps of a model: text mode -> head -> finding -> map or None --------------------------
def fit_maps(probs: dict, labels: np.ndarray, findings: Sequence[str], *,
             min_positives: int = MIN_POSITIVES, l2: float = L2) -> Maps:
    """``probs[mode][head]`` (reports x findings, validation) -> mode -> head -> finding ->
    a ``PlattMap``, or ``NotCalibrated`` with its reason."""
    out: Maps = {}
    for mode, heads in probs.items():
        out[mode] = {}
        for head, P in heads.items():
            out[mode][head] = {}
            for k, f in enumerate(findings):
                m = fit_platt(labels[:, k], P[:, k], min_positives=min_positives, l2=l2)
                out[mode][head][f] = m or NotCalibrated(
                    reason=cannot_calibrate_reason(labels[:, k], min_positives=min_positives),
                    positives=int(labels[:, k].sum()), n=int(len(labels)))
    return out


def map_for(recalibration: Recalibration | None, mode: str, head: str, finding: str) -> PlattMap | None:
    """The fitted map of one mode, head and finding (None: none, or not calibrated)."""
    return None if recalibration is None else recalibration.map_for(mode, head, finding)


def apply_maps(recalibration: Recalibration | None, mode: str, head: str, P: np.ndarray,
               findings: Sequence[str]) -> np.ndarray:
    """Probabilities (n x findings) of one mode and head through their maps (identity where none;
    ``P`` itself when the weights carry no recalibration)."""
    return P if recalibration is None else recalibration.apply(mode, head, P, findings)


def map_thresholds(thresholds: dict, recalibration: Recalibration) -> dict:
    """mode -> head -> finding -> threshold, each carried through its finding's map (a monotone
    map: every thresholded decision stays the same); unchanged where there is no map."""
    out: dict = {}
    for mode, heads in thresholds.items():
        out[mode] = {}
        for head, per in heads.items():
            out[mode][head] = {}
            for f, t in per.items():
                m = map_for(recalibration, mode, head, f)
                out[mode][head][f] = float(m(t)) if m else t
    return out


def map_discordance(discordance: DiscordancePoints | None, recalibration: Recalibration) -> DiscordancePoints | None:
    """Report-QA operating points (cuts on the report-mode image probability) through the
    report/image maps, so every flag stays the same."""
    if discordance is None:
        return None
    points = {}
    for f, cuts in discordance.points.items():
        m = map_for(recalibration, "report", "image", f)
        points[f] = {k: (float(m(v)) if m is not None and v is not None else v) for k, v in cuts.items()}
    return replace(discordance, points=points)


# -- measurement -----------------------------------------------------------------------------
def calibration_line(y, p) -> tuple[float, float]:
    """(slope, intercept) of the logistic regression of the outcome on logit(p); NaN if it
    cannot be fitted (one class, or separation)."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return float("nan"), float("nan")
    a, b = _logistic(logit(p), y, np.ones((1, len(y))))
    return float(a[0]), float(b[0])


def top_bin(y, p, *, cut: float = TOP_CUT) -> dict:
    """Among predictions >= ``cut``: n, positives, mean prediction, observed rate (Wilson 95% CI),
    and whether the observed rate is within ``TOP_TOLERANCE`` of the mean prediction."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    sel = p >= cut
    n, k = int(sel.sum()), int(y[sel].sum())
    if n == 0:
        return {"cut": cut, "n": 0, "positives": 0, "mean_predicted": None, "observed": None,
                "observed_ci": None, "within_tolerance": None}
    mean, obs = float(p[sel].mean()), k / n
    return {"cut": cut, "n": n, "positives": k, "mean_predicted": mean, "observed": obs,
            "observed_ci": wilson_ci(k, n), "within_tolerance": bool(abs(obs - mean) <= TOP_TOLERANCE * mean)}


def pooled_top_bin(Y: np.ndarray, P: np.ndarray, findings: Sequence[str], shown: dict[str, bool] | None = None,
                   *, pool: Sequence[str], cut: float = TOP_CUT) -> dict:
    """The top bin over the predictions of several findings at once: among every probability >= ``cut`` of
    the ``pool`` findings a user reads a number for (``shown``: finding -> whether the product shows its
    probability; None: all of them), n, mean prediction and observed rate. It is how the issue stated the
    problem ("among image-only predictions >= 0.3 for Edema, Cardiomegaly and Atelectasis, 25% were positive
    against a mean prediction of 0.56"): what a reader meets across the findings, not one finding's tail."""
    cols = [k for k, f in enumerate(findings) if f in pool and (shown is None or shown.get(f))]
    if not cols:
        return {**top_bin([], [], cut=cut), "findings": []}
    y = np.concatenate([np.asarray(Y)[:, k] for k in cols])
    p = np.concatenate([np.asarray(P)[:, k] for k in cols])
    return {**top_bin(y, p, cut=cut), "findings": [findings[k] for k in cols]}


def pooled_before_after(P: np.ndarray, Q: np.ndarray, Y: np.ndarray, findings: Sequence[str],
                        calibrated: dict[str, bool], supported: Sequence[str]) -> dict:
    """The pooled top bin over the ``supported`` findings (those the weights' evidence says the image
    supports) before recalibration (every one showed a number) and after it (only the calibrated ones do:
    the others show "not calibrated")."""
    return {"before": pooled_top_bin(Y, P, findings, pool=supported),
            "after": pooled_top_bin(Y, Q, findings, calibrated, pool=supported)}


def measure(y, p, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Calibration of one finding's probabilities: n, positives, slope and intercept with 95%
    percentile bootstrap CIs (resampling reports), and the top bin."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    slope, intercept = calibration_line(y, p)
    out = {"n": int(len(y)), "positives": int(y.sum()), "slope": slope, "intercept": intercept,
           "slope_ci": None, "intercept_ci": None, "top_bin": top_bin(y, p)}
    if n_boot and np.isfinite(slope):
        rng = np.random.default_rng(seed)
        w = np.stack([np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)) for _ in range(n_boot)])
        w = w[(w * y).sum(1) > 0]
        w = w[(w * (1 - y)).sum(1) > 0].astype(float)
        a, b = _logistic(logit(p), y, w, init=(slope, intercept), tol=1e-5)
        ok = np.isfinite(a)
        if ok.sum() >= 0.9 * n_boot:
            out["slope_ci"] = [float(x) for x in np.percentile(a[ok], [2.5, 97.5])]
            out["intercept_ci"] = [float(x) for x in np.percentile(b[ok], [2.5, 97.5])]
        out["bootstrap_failed"] = int(n_boot - ok.sum())
    return out


def meets_targets(after: dict) -> dict:
    """The issue's targets for one calibrated finding: slope in ``SLOPE_BAND`` and the top bin within
    tolerance (recalibration_protocol.targets says for which findings the slope is judged)."""
    lo, hi = SLOPE_BAND
    s = after["slope"]
    return {"slope_in_band": bool(lo <= s <= hi) if np.isfinite(s) else None,
            "top_bin_within": after["top_bin"]["within_tolerance"]}


# -- cross-fitting: nothing is measured on what fitted it --------------------------------------
@dataclass(frozen=True)
class FoldPredictions:
    """One fold's out-of-fold predictions of one mode and head: report uids, P and Y (n x findings)."""
    uids: list[str]
    P: np.ndarray
    Y: np.ndarray


def _stratified_parts(Y_col: np.ndarray, uids: list[str], parts: int, seed: int) -> np.ndarray:
    """Part index per report, stratified by label; deterministic in (uids, seed)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(np.array(uids, dtype=str), kind="stable")
    out = np.zeros(len(uids), int)
    for c in (0, 1):
        idx = order[Y_col[order] == c]
        idx = idx[rng.permutation(len(idx))]
        out[idx] = (np.arange(len(idx)) + rng.integers(parts)) % parts
    return out


def _fit_apply(fit_uids, fit_y, fit_p, apply_uids, apply_p, *, min_positives: int, l2: float):
    """Fit on one set, apply to another, refusing when they share a report."""
    shared = set(fit_uids) & set(apply_uids)
    if shared:
        raise RecalibrationError(f"{len(shared)} report(s) are both in the fitting and the measured set "
                                 f"(e.g. {sorted(shared)[0]}); a map is never measured on what fitted it")
    m = fit_platt(fit_y, fit_p, min_positives=min_positives, l2=l2)
    return m, (m(apply_p) if m is not None else None)


def cross_fitted(folds: Sequence[FoldPredictions], findings: Sequence[str], *, scheme: str = "within",
                 inner: int = 2, seed: int = 0, min_positives: int = MIN_POSITIVES, l2: float = L2) -> dict:
    """Pooled out-of-fold predictions before and after cross-fitted recalibration.

    Returns ``{"P": before, "Q": after, "Y": labels, "calibrated": finding -> bool, "fits":
    finding -> [map dicts]}``. A finding counts as calibrated only when every fitting set gave a
    map; otherwise its "after" is its "before" (the product would show no number for it)."""
    if scheme not in ("within", "across"):
        raise RecalibrationError(f"unknown cross-fitting scheme {scheme!r}: use within or across")
    if scheme == "across" and len(folds) < 2:
        raise RecalibrationError("the across scheme needs at least two folds")
    if scheme == "within" and inner < 2:
        raise RecalibrationError("the within scheme needs at least two inner parts")
    all_uids = [u for fold in folds for u in fold.uids]
    if len(set(all_uids)) != len(all_uids):
        raise RecalibrationError("a report appears in two folds' out-of-fold predictions; folds must be disjoint")
    P = np.concatenate([f.P for f in folds])
    Y = np.concatenate([f.Y for f in folds])
    Q = P.copy()
    calibrated, fits = {}, {}
    for k, finding in enumerate(findings):
        col, ok, maps = [], True, []
        for i, fold in enumerate(folds):
            q = np.full(len(fold.uids), np.nan)
            if scheme == "across":
                others = [g for j, g in enumerate(folds) if j != i]
                m, out = _fit_apply([u for g in others for u in g.uids], np.concatenate([g.Y[:, k] for g in others]),
                                    np.concatenate([g.P[:, k] for g in others]), fold.uids, fold.P[:, k],
                                    min_positives=min_positives, l2=l2)
                maps.append(m.to_dict() if m else None)
                ok &= m is not None
                if m is not None:
                    q = out
            else:
                part = _stratified_parts(fold.Y[:, k], fold.uids, inner, seed + 1000 * i + k)
                uids = np.array(fold.uids, dtype=object)
                for s in range(inner):
                    fit, held = part != s, part == s
                    m, out = _fit_apply(list(uids[fit]), fold.Y[fit, k], fold.P[fit, k], list(uids[held]),
                                        fold.P[held, k], min_positives=min_positives, l2=l2)
                    maps.append(m.to_dict() if m else None)
                    ok &= m is not None
                    if m is not None:
                        q[held] = out
            col.append(q)
        calibrated[finding] = bool(ok)
        fits[finding] = maps
        if ok:
            Q[:, k] = np.concatenate(col)
    return {"P": P, "Q": Q, "Y": Y, "calibrated": calibrated, "fits": fits}


def before_after(P: np.ndarray, Q: np.ndarray, Y: np.ndarray, findings: Sequence[str], calibrated: dict, *,
                 n_boot: int = 1000, seed: int = 0) -> dict:
    """finding -> {"calibrated", "before": measure, "after": measure or None, "targets"}."""
    out = {}
    for k, f in enumerate(findings):
        before = measure(Y[:, k], P[:, k], n_boot=n_boot, seed=seed)
        after = measure(Y[:, k], Q[:, k], n_boot=n_boot, seed=seed) if calibrated[f] else None
        out[f] = {"calibrated": bool(calibrated[f]), "before": before, "after": after,
                  "targets": meets_targets(after) if after else None}
    return out
