"""Operating points: the threshold behind each "above threshold", and report-QA discordance.

Thresholds. Youden's J on validation is noisy when a finding has few positives (4-6 here:
it gave 0.002 for one head). For a *calibrated* probability the point that maximises J is
where the likelihood ratio is 1, i.e. where the probability equals the prevalence. So the
rule shrinks Youden's threshold toward the training prevalence, in logit space, with the
weight of ``PRIOR_POSITIVES`` positives:

    t = sigmoid(w * logit(t_youden) + (1 - w) * logit(prevalence)),  w = n_pos / (n_pos + 10)

With 4 validation positives w = 0.29 (mostly the prevalence rule); with 46, w = 0.82.

Discordance (report QA, report mode only). What the report says is the text head at its
threshold (it reads the report almost perfectly: AUC ~0.99, because the labels were coded
from it). A finding is discordant when the image head disagrees *strongly*:

- ``image_positive``: the report does not say it, the image probability is >= ``high``;
- ``image_negative``: the report says it, the image probability is <= ``low``.

``high``/``low`` are tail quantiles of the image probability on validation (among reports
whose text says no / yes), chosen per finding on a grid so that the share of validation
reports flagged for any finding stays within a false-flag budget while the mean catch rate
is highest. Only findings the image supports (see core.evaluation.evidence) get operating points. The
score is how far past its operating point the image probability is, in logits: it ranks
the worklist.
"""
from __future__ import annotations

import itertools

import numpy as np

from core.data.labels import Head, TextMode
from core.evaluation.metrics import youden_threshold

PRIOR_POSITIVES = 10.0
TAIL_GRID = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04)   # tail share per finding and direction
DIRECTIONS = ("image_positive", "image_negative")


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def operating_threshold(y: np.ndarray, p: np.ndarray, prevalence: float, *,
                        prior_positives: float = PRIOR_POSITIVES) -> float:
    """Youden's threshold shrunk toward the prevalence (see the module docstring)."""
    prevalence = float(np.clip(prevalence, 1e-4, 1 - 1e-4))
    n_pos = float(np.sum(y))
    if n_pos == 0 or n_pos == len(y):
        return prevalence
    w = n_pos / (n_pos + prior_positives)
    return float(_sigmoid(w * _logit(youden_threshold(y, p)) + (1 - w) * _logit(prevalence)))


def fit_thresholds(probs: dict, labels: np.ndarray, prevalence: np.ndarray, findings, modes, heads) -> dict:
    """mode -> head -> finding -> operating threshold, from validation probabilities
    ``probs[mode][head]`` (reports x findings). The text head reads nothing in mode ``none``:
    its threshold there is 0.5 and never used. Training and the refit both fit through this."""
    out: dict = {}
    for mode in modes:
        out[mode] = {}
        for head in heads:
            if head == Head.TEXT and mode == TextMode.NONE:
                out[mode][head] = {f: 0.5 for f in findings}
                continue
            P = probs[mode][head]
            out[mode][head] = {f: operating_threshold(labels[:, k], P[:, k], prevalence[k])
                               for k, f in enumerate(findings)}
    return out


def fit_discordance(p_image: np.ndarray, p_text: np.ndarray, labels: np.ndarray, text_thresholds: np.ndarray,
                    findings: list[str], supported: list[str], *, budget: float = 0.04,
                    grid: tuple[float, ...] = TAIL_GRID) -> dict:
    """Per supported finding ``{"high": p or None, "low": p or None}`` (validation arrays,
    one row per report). Maximises the mean expected catch rate over cells (for ``high``:
    the share of true positives whose image reaches it, i.e. a report that denied them would
    be flagged; for ``low``: the share of true negatives at or under it, i.e. a false
    positive statement would be flagged), subject to the any-finding flag rate on the
    unedited reports <= ``budget``. Returns the operating points and what they flag."""
    says = p_text >= text_thresholds[None, :]
    cells, options = [], []
    for f in supported:
        k = findings.index(f)
        neg, pos = ~says[:, k], says[:, k]
        for direction in DIRECTIONS:
            base = p_image[neg, k] if direction == "image_positive" else p_image[pos, k]
            opts = []
            for tail in grid:
                if tail == 0 or len(base) == 0:
                    opts.append((None, np.zeros(len(p_image), bool), 0.0))
                    continue
                if direction == "image_positive":
                    cut = float(np.quantile(base, 1 - tail))
                    flags = neg & (p_image[:, k] >= cut)
                    catch = float(np.mean(p_image[labels[:, k] == 1, k] >= cut)) if labels[:, k].any() else 0.0
                else:
                    cut = float(np.quantile(base, tail))
                    flags = pos & (p_image[:, k] <= cut)
                    catch = float(np.mean(p_image[labels[:, k] == 0, k] <= cut)) if (labels[:, k] == 0).any() else 0.0
                opts.append((cut, flags, catch))
            cells.append((f, k, direction))
            options.append(opts)
    best, best_value = None, -1.0
    for choice in itertools.product(range(len(grid)), repeat=len(cells)):
        flagged = np.zeros(len(p_image), bool)
        for c, i in enumerate(choice):
            flagged |= options[c][i][1]
        if flagged.mean() > budget:
            continue
        value = sum(options[c][i][2] for c, i in enumerate(choice))
        if value > best_value:
            best, best_value = choice, value
    points = {f: {"high": None, "low": None} for f in supported}
    flagged = np.zeros(len(p_image), bool)
    for c, i in enumerate(best or ()):
        f, _, direction = cells[c]
        cut, flags, _ = options[c][i]
        points[f]["high" if direction == "image_positive" else "low"] = cut
        flagged |= flags
    return {"budget": budget, "points": points, "val_flag_rate": float(flagged.mean()),
            "rule": "tail quantiles of the image probability on validation, any-finding flag rate <= budget"}


def discordance(p_image: dict, p_text: dict, text_thresholds: dict, points: dict, *,
                ruled_out: frozenset[str] | set[str] = frozenset()) -> list[dict]:
    """Discordant findings of one study, strongest first: finding, direction, score (logits
    past the operating point), margin (the operating point, a probability). ``ruled_out``: findings the
    report only mentions to rule out ("without overt pulmonary edema"): never read as said, whatever the
    text head reads (it misreads some negations, docs/results.md)."""
    out = []
    for f, op in points.items():
        says = p_text[f] >= text_thresholds[f] and f not in ruled_out
        z = float(_logit(p_image[f]))
        if not says and op.get("high") is not None and p_image[f] >= op["high"]:
            out.append({"finding": f, "direction": "image_positive", "margin": op["high"],
                        "score": round(z - float(_logit(op["high"])), 4)})
        elif says and op.get("low") is not None and p_image[f] <= op["low"]:
            out.append({"finding": f, "direction": "image_negative", "margin": op["low"],
                        "score": round(float(_logit(op["low"])) - z, 4)})
    return sorted(out, key=lambda d: -d["score"])
