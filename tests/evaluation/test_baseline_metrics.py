"""Keyword baseline (negation rule) and metrics."""
from __future__ import annotations

import numpy as np

from core.data.labels import FINDINGS
from core.evaluation.keyword_baseline import keyword_scores
from core.evaluation.metrics import (
    bootstrap_auc_ci,
    ece,
    fit_temperature,
    macro_auc,
    paired_macro_auc_difference,
    safe_auc,
    youden_threshold,
)


def score(text, finding):
    return keyword_scores(text)[FINDINGS.index(finding)]


def test_negation_rule():
    assert score("The heart is enlarged.", "Cardiomegaly") == 1.0
    assert score("The heart is not enlarged.", "Cardiomegaly") == 0.25
    assert score("No pneumonia. Lungs clear.", "Pneumonia") == 0.25
    assert score("Right lower lobe pneumonia.", "Pneumonia") == 1.0
    assert score("Lungs are clear.", "Pneumonia") == 0.0
    assert score("No edema. Bibasilar atelectasis.", "Atelectasis") == 1.0  # negation is per sentence


def test_metrics_basics():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1)
    assert 0.5 < safe_auc(y, p) < 1
    assert np.isnan(safe_auc(np.zeros(5), np.arange(5)))
    Y, P = np.stack([y, 1 - y], 1), np.stack([p, 1 - p], 1)
    per, macro = bootstrap_auc_ci(Y, P, n_boot=200)
    m = macro_auc(Y, P)
    assert macro[0] <= m <= macro[1] and all(lo <= hi for lo, hi in per)
    assert ece(np.array([0, 1] * 50), np.array([0.0, 1.0] * 50)) == 0.0
    assert 0 < youden_threshold(y, p) < 1


def test_temperature_recovers_scale():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-z))).astype(float)
    assert abs(fit_temperature(y, 3 * z) - 3) < 0.4


def test_paired_difference_of_macro_auc():
    rng = np.random.default_rng(1)
    Y = (rng.random((300, 2)) < 0.3).astype(int)
    good = Y + rng.normal(0, 0.6, Y.shape)
    noise = rng.normal(0, 1, Y.shape)
    d, (lo, hi) = paired_macro_auc_difference(Y, good, noise, n_boot=200)
    assert d == macro_auc(Y, good) - macro_auc(Y, noise)
    assert 0 < lo < d < hi  # a clearly better model: the whole interval above zero
    d_same, ci_same = paired_macro_auc_difference(Y, good, good, n_boot=50)
    assert d_same == 0 and ci_same == [0.0, 0.0]  # paired: identical models differ by exactly nothing
