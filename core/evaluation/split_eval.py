"""Evaluate the model on a split of a collection: per-report probabilities, the metrics JSON
and the per-study predictions CSV (their file names: core.evaluation.eval_files).

One prediction per report: the mean of the calibrated probabilities of its frontal images,
then the weights' recalibration map (core.evaluation.recalibration) where they carry one — the
map the predictor applies to each prediction, so evaluation and serving give the same numbers
for a one-image report and every thresholded decision is the map's.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from core.data.image_bank import ImageBank, Samples
from core.data.labels import FINDINGS
from core.data.preprocess import normalise
from core.data.reports import Report
from core.errors import OptionError
from core.evaluation.keyword_baseline import keyword_matrix
from core.evaluation.metrics import auprc, bootstrap_auc_ci, ece, macro_auc, safe_auc
from core.evaluation.recalibration import apply_maps
from core.model.description import FactsError, describe
from core.model.inference import image_features, report_probabilities, text_features

REPORT_MODE_CAVEAT = ("The MeSH labels of this collection were coded from the report text, so in report mode "
                      "the text branch reads the answer: a keyword rule scores about 0.98 macro AUC. "
                      "Image-only (none) and indication modes are the honest tasks.")


def select_reports(reports: list[Report], split: str, split_uids: dict | None) -> list[Report]:
    if split == "all":
        return list(reports)
    if not split_uids or split not in split_uids:
        raise OptionError(f"the weights carry no {split!r} split; use --split all")
    keep = set(split_uids[split])
    return [r for r in reports if r.uid in keep]


def weights_collection(description, data_dir: Path, dataset: str | None = None):
    """The collection to evaluate or refit existing weights on: ``dataset`` (core.data.sources),
    else the one the weights were trained on (Open-I for weights older than that key), labelled
    as they were trained (automatic MeSH terms, uncertain-label policy)."""
    from core.data.sources import load_collection
    desc = describe(description)
    name = dataset or (desc.trained_on or {}).get("dataset", "openi")
    return load_collection(name, Path(data_dir), use_automatic="automatic" in (desc.label_source or ""),
                           uncertain_policy=(desc.training_config or {}).get("uncertain_policy", "ignore"))


def require_label_order(description) -> None:
    """The data's labels (core.data.labels) and the model's outputs (its weights' labels) must be the
    same findings in the same order for any score to mean something."""
    model_findings = describe(description).findings
    if model_findings != FINDINGS:
        raise FactsError(f"these weights predict {', '.join(model_findings)}, the data is labelled for "
                         f"{', '.join(FINDINGS)} (core/data/labels.py); evaluate with the labels they were trained on")


def predict_reports(model, tokenizer, description, reports: list[Report], data_dir: Path, mode: str, *,
                    bank: ImageBank | None = None, paths: dict | None = None,
                    image_encoder=None) -> dict[str, np.ndarray]:
    """Per-report calibrated (and, where the weights carry maps, recalibrated) probabilities of
    every head (rows follow ``reports``). ``paths``
    maps image id -> file for datasets other than Open-I (core.data.sources); ``image_encoder``
    replaces the model's (core.model.inference.image_features)."""
    desc = describe(description)
    require_label_order(desc)
    pre = desc.preprocessing
    ids = [i for r in reports for i in r.image_ids]
    bank = bank or ImageBank.build(Path(data_dir), ids, pre.image_size, paths=paths)
    samples = Samples.build(reports, [r.uid for r in reports], bank.index())
    pixels = normalise(bank.pixels[samples.image_rows], pre.mean, pre.std)
    img = image_features(model, pixels, encoder=image_encoder)
    txt = text_features(model, tokenizer, [r.text(mode) for r in reports], max_len=desc.text_max_len)
    probs = report_probabilities(model, img, txt, samples.report_idx, len(reports), mode)
    return {h: apply_maps(desc.recalibration, mode, h, P, desc.findings) for h, P in probs.items()}


def predict_views(model, description, reports: list[Report], bank: ImageBank,
                  lateral_rows: dict[str, list[int]]) -> np.ndarray:
    """Per-report image-head probabilities over both views: the mean over a report's frontal
    images and its laterals (``lateral_rows``: uid -> rows of ``bank``); a report without a
    lateral keeps its frontal mean."""
    desc = describe(description)
    pre = desc.preprocessing
    frontal = Samples.build(reports, [r.uid for r in reports], bank.index())
    extra = [(k, row) for k, r in enumerate(reports) for row in lateral_rows.get(r.uid, [])]
    idx = frontal.report_idx + [k for k, _ in extra]
    rows = frontal.image_rows + [row for _, row in extra]
    img = image_features(model, normalise(bank.pixels[rows], pre.mean, pre.std))
    no_text = torch.zeros(len(reports), model.text_encoder.out_dim)
    probs = report_probabilities(model, img, no_text, idx, len(reports), "none")["image"]
    return apply_maps(desc.recalibration, "none", "image", probs, desc.findings)


def metrics_json(Y: np.ndarray, P: np.ndarray, *, thresholds: dict | None = None, n_boot: int = 1000,
                 findings=FINDINGS) -> dict:
    """The metrics JSON of one split, mode and head (columns of Y and P follow ``findings``, the
    weights' own; require_label_order has checked the data is labelled for them)."""
    finding_ci, macro_ci = bootstrap_auc_ci(Y, P, n_boot=n_boot)
    out = {
        "n_studies": int(len(Y)),
        "n_positive": {f: int(Y[:, k].sum()) for k, f in enumerate(findings)},
        "auc": {f: safe_auc(Y[:, k], P[:, k]) for k, f in enumerate(findings)},
        "auc_ci": {f: finding_ci[k] for k, f in enumerate(findings)},
        "macro_auc": macro_auc(Y, P),
        "macro_auc_ci": macro_ci,
        "auprc": {f: auprc(Y[:, k], P[:, k]) for k, f in enumerate(findings)},
        "ece": {f: ece(Y[:, k], P[:, k]) for k, f in enumerate(findings)},
    }
    out["mean_ece"] = float(np.mean(list(out["ece"].values())))
    if thresholds:
        out["thresholds"] = thresholds
        out["sensitivity"], out["specificity"] = {}, {}
        for k, f in enumerate(findings):
            pred = P[:, k] >= thresholds[f]
            pos, neg = Y[:, k] == 1, Y[:, k] == 0
            out["sensitivity"][f] = float(pred[pos].mean()) if pos.any() else float("nan")
            out["specificity"][f] = float((~pred[neg]).mean()) if neg.any() else float("nan")
    return out


def keyword_baseline_json(reports: list[Report], *, n_boot: int = 1000) -> dict:
    Y = np.array([r.labels for r in reports], dtype=float)
    P = keyword_matrix([r.text("report") for r in reports])
    out = metrics_json(Y, P, n_boot=n_boot)
    out["note"] = REPORT_MODE_CAVEAT
    return out


def write_predictions_csv(path: Path, reports: list[Report], probs: np.ndarray, findings=FINDINGS) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "image_id", *findings, *[f"label_{f}" for f in findings]])
        for r, p in zip(reports, probs, strict=True):
            w.writerow([r.uid, ";".join(r.image_ids), *[f"{v:.6f}" for v in p], *r.labels])
