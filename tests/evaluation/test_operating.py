"""core.evaluation.operating_points: thresholds that survive few positives, report-QA operating points."""
from __future__ import annotations

import numpy as np

from core.evaluation.metrics import youden_threshold
from core.evaluation.operating_points import discordance, fit_discordance, operating_threshold

FINDINGS = ["A", "B"]


def calibrated_scores(rng, n, prevalence):
    y = (rng.random(n) < prevalence).astype(float)
    z = rng.normal(0, 1, n) + 1.5 * y + np.log(prevalence / (1 - prevalence))
    return y, 1 / (1 + np.exp(-z))


def test_few_positives_shrink_toward_prevalence():
    rng = np.random.default_rng(0)
    y, p = calibrated_scores(rng, 400, 0.01)
    assert 1 <= y.sum() <= 8
    t = operating_threshold(y, p, 0.01)
    youden = youden_threshold(y, p)
    # the shrunk threshold lies between Youden's and the prevalence, nearer the prevalence
    assert min(youden, 0.01) - 1e-9 <= t <= max(youden, 0.01) + 1e-9
    assert abs(np.log(t) - np.log(0.01)) < abs(np.log(t) - np.log(youden)) or np.isclose(youden, 0.01)


def test_many_positives_stay_near_youden():
    rng = np.random.default_rng(1)
    y, p = calibrated_scores(rng, 4000, 0.2)
    t, youden = operating_threshold(y, p, 0.2), youden_threshold(y, p)
    logit = lambda v: np.log(v / (1 - v))  # noqa: E731
    w = y.sum() / (y.sum() + 10)
    assert w > 0.98
    assert np.isclose(logit(t), w * logit(youden) + (1 - w) * logit(0.2))


def test_single_class_gives_the_prevalence():
    assert operating_threshold(np.zeros(50), np.linspace(0, 1, 50), 0.03) == 0.03


def qa_data(rng, n=600):
    Y = (rng.random((n, 2)) < [0.15, 0.1]).astype(float)
    text = np.clip(Y * 0.95 + rng.normal(0, 0.02, Y.shape), 0.001, 0.999)   # the report says the truth
    image = 1 / (1 + np.exp(-(rng.normal(0, 1, Y.shape) + 2.0 * Y - 2)))
    return Y, image, text


def test_fit_discordance_respects_budget_and_support():
    rng = np.random.default_rng(2)
    Y, image, text = qa_data(rng)
    fit = fit_discordance(image, text, Y, np.array([0.5, 0.5]), FINDINGS, ["A"], budget=0.04)
    assert set(fit["points"]) == {"A"}                      # B is not supported: no operating point
    assert fit["val_flag_rate"] <= 0.04
    assert fit["points"]["A"]["high"] is not None           # the budget is spent on something
    flagged = [discordance({"A": i[0], "B": i[1]}, {"A": t[0], "B": t[1]}, {"A": 0.5, "B": 0.5}, fit["points"])
               for i, t in zip(image, text, strict=True)]
    assert np.mean([bool(f) for f in flagged]) == fit["val_flag_rate"]
    assert all(d["finding"] == "A" for f in flagged for d in f)


def test_discordance_direction_score_and_order():
    points = {"A": {"high": 0.6, "low": 0.05}, "B": {"high": 0.7, "low": None}}
    thr = {"A": 0.5, "B": 0.5}
    out = discordance({"A": 0.9, "B": 0.71}, {"A": 0.01, "B": 0.02}, thr, points)
    assert [d["finding"] for d in out] == ["A", "B"]          # A is further past its point
    assert all(d["direction"] == "image_positive" and d["score"] > 0 for d in out)
    assert out[0]["margin"] == 0.6
    neg = discordance({"A": 0.01, "B": 0.01}, {"A": 0.99, "B": 0.99}, thr, points)
    assert [(d["finding"], d["direction"]) for d in neg] == [("A", "image_negative")]   # B has no low point
    assert discordance({"A": 0.55, "B": 0.5}, {"A": 0.01, "B": 0.01}, thr, points) == []
