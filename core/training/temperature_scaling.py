"""After training, on the validation split: the late-fusion weights, one temperature per
head, text mode and finding (temperature scaling), and the thresholds on the scaled probabilities."""
from __future__ import annotations

import numpy as np
import torch

from core.data.labels import FINDINGS, HEADS, TEXT_MODES, Head, TextMode
from core.evaluation.metrics import fit_temperature
from core.evaluation.operating_points import fit_thresholds
from core.model.inference import report_logits
from core.training.setup import RunData
from core.training.validation import FeatureCache


def fit_late_fusion(model, logits: dict, Y: np.ndarray, mi: int, mode: str) -> None:
    """Per finding, the convex combination of fusion/image/text logits (step 0.1) with
    the lowest validation log loss after temperature scaling. Text gets no weight in
    mode ``none``. Few parameters (two per finding), so validation can afford them."""
    grid = [(a / 10, b / 10, (10 - a - b) / 10) for a in range(11) for b in range(11 - a)]
    if mode == TextMode.NONE:
        grid = [g for g in grid if g[2] == 0]
    stacked = np.stack([logits["fusion"], logits["image"], logits["text"]], -1)
    for k in range(len(FINDINGS)):
        def loss(w, k=k):  # called at once, in this iteration
            z = stacked[:, k] @ np.array(w)
            z = z / fit_temperature(Y[:, k], z)
            return float(np.mean(np.logaddexp(0, z) - Y[:, k] * z))
        best = min(grid, key=loss)
        model.late_weights[mi, k] = torch.tensor(best)


def fit_temperature_scaling(model, data: RunData, cache: FeatureCache) -> dict:
    """Sets ``model.late_weights`` and ``model.temperature`` from the validation split and returns
    the thresholds (Youden's J shrunk toward the training prevalence,
    core.evaluation.operating_points) fitted on the temperature-scaled probabilities."""
    s = data.samples["val"]
    feats = cache.image[s.image_rows]
    rows = sorted(set(s.report_idx))
    Y = data.labels[rows].numpy()
    prevalence = data.labels[sorted(set(data.samples["train"].report_idx))].numpy().mean(axis=0)
    probs: dict = {}
    temp = torch.ones_like(model.temperature)
    model.late_weights.zero_()
    model.late_weights[..., 0] = 1.0  # start from the fusion head alone
    n = len(data.reports)
    for mi, mode in enumerate(TEXT_MODES):
        logits = report_logits(model, feats, cache.text[mode], s.report_idx, n, mode)
        fit_late_fusion(model, {h: v[rows] for h, v in logits.items()}, Y, mi, mode)
        logits = report_logits(model, feats, cache.text[mode], s.report_idx, n, mode)
        probs[mode] = {}
        for hi, head in enumerate(HEADS):
            if head == Head.TEXT and mode == TextMode.NONE:
                continue
            L = logits[head][rows]
            for k in range(len(FINDINGS)):
                temp[hi, mi, k] = fit_temperature(Y[:, k], L[:, k])
            probs[mode][head] = 1 / (1 + np.exp(-L / temp[hi, mi].numpy()))
    model.temperature.copy_(temp)
    return fit_thresholds(probs, Y, prevalence, FINDINGS, TEXT_MODES, HEADS)
