"""What is fitted after training, on validation and the held-out evaluation: operating
thresholds, held-out evidence, report-QA operating points and the out-of-distribution guard.
Used at the end of ``scripts/train.py`` and by ``scripts/refit_operating_points.py`` for
existing weights. Findings, heads and modes come from the weights' description, never from
this code's constants.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from core.data.sources import Collection
from core.evaluation.evidence import build_evidence
from core.evaluation.metrics import wilson_ci
from core.evaluation.operating_points import fit_discordance, fit_thresholds
from core.evaluation.operating_targets import validation_block
from core.evaluation.split_eval import predict_reports, select_reports
from core.model.description import ModelDescription, describe

QA_BUDGET = 0.04   # validation share of unedited reports flagged for any finding (target <= 5% unseen)
THRESHOLD_RULE = ("Youden's J on validation shrunk toward the training prevalence in logit space, "
                  "weight n_pos / (n_pos + 10) (core.evaluation.operating_points)")


def prevalence(reports, split: dict) -> np.ndarray:
    train = select_reports(reports, "train", split)
    return np.array([r.labels for r in train], dtype=float).mean(axis=0)


def val_probabilities(model, tokenizer, description, reports, data_dir: Path, **images) -> tuple[dict, np.ndarray]:
    """({mode: {head: reports x findings}}, labels) on the validation split. ``images``:
    ``bank=`` / ``paths=`` as core.evaluation.split_eval.predict_reports takes them."""
    desc = describe(description)
    val = select_reports(reports, "val", desc.split)
    probs = {m: predict_reports(model, tokenizer, desc, val, Path(data_dir), m, **images) for m in desc.text_modes}
    return probs, np.array([r.labels for r in val], dtype=float)


def report_qa(desc: ModelDescription, probs: dict, Y: np.ndarray, *, budget: float = QA_BUDGET) -> dict:
    findings = list(desc.findings)
    supported = desc.supported
    text_thr = np.array([desc.thresholds_for("report", "text")[f] for f in findings])
    block = fit_discordance(probs["report"]["image"], probs["report"]["text"], Y, text_thr, findings,
                            supported, budget=budget)
    block["supported"] = supported
    return block


def refit(model, tokenizer, description, reports, data_dir: Path, eval_dir: Path, *,
          cv_summary: dict | None = None, refit_thresholds: bool = True, **images) -> ModelDescription:
    """The description with thresholds (shrunk rule; training already fits them so), evidence
    from ``eval_dir`` and report-QA operating points refitted."""
    desc = describe(description)
    probs, Y = val_probabilities(model, tokenizer, desc, reports, data_dir, **images)
    if refit_thresholds:
        desc = desc.updated(thresholds=fit_thresholds(probs, Y, prevalence(reports, desc.split), desc.findings,
                                                      desc.text_modes, desc.heads),
                            threshold_rule=THRESHOLD_RULE)
    desc = desc.updated(evidence=build_evidence(eval_dir, list(desc.findings), list(desc.text_modes),
                                                list(desc.heads), cv_summary=cv_summary))
    block = validation_block(probs, Y, list(desc.findings), desc.image_reliable, prevalence(reports, desc.split),
                             n_reports=len(Y))
    return desc.updated(discordance=report_qa(desc, probs, Y), operating_points=block)


def rescore_thresholds(eval_dir: Path, description) -> None:
    """Sensitivity and specificity (with Wilson CIs) at the weights' thresholds, written into
    each ``<split>_<mode>_<head>.json`` from its per-study CSV; AUCs do not depend on them."""
    import json

    from core.evaluation.cross_validation import read_predictions_csv
    desc = describe(description)
    for path in sorted(Path(eval_dir).glob("*_*_*.json")):
        csv_path = path.with_suffix(".csv")
        res = json.loads(path.read_text())
        mode, head = res.get("text_mode"), res.get("head")
        if not csv_path.is_file() or not desc.thresholds_for(mode, head):
            continue
        _, P, Y = read_predictions_csv(csv_path)
        thr = desc.thresholds_for(mode, head)
        res["thresholds"] = thr
        for key in ("sensitivity", "specificity", "sensitivity_ci", "specificity_ci"):
            res[key] = {}
        for k, f in enumerate(desc.findings):
            pred = P[:, k] >= thr[f]
            pos, neg = Y[:, k] == 1, Y[:, k] == 0
            res["sensitivity"][f] = float(pred[pos].mean()) if pos.any() else float("nan")
            res["specificity"][f] = float((~pred[neg]).mean()) if neg.any() else float("nan")
            res["sensitivity_ci"][f] = wilson_ci(int(pred[pos].sum()), int(pos.sum()))
            res["specificity_ci"][f] = wilson_ci(int((~pred[neg]).sum()), int(neg.sum()))
        res["model"] = desc.version
        res["threshold_rule"] = desc.threshold_rule
        path.write_text(json.dumps(res, indent=2) + "\n")


def lateral_films(data_dir: Path, uids) -> list[np.ndarray]:
    """Lateral films of these reports, where the folder has them (core.data.laterals); [] otherwise."""
    from core.data.images import load_png_gray
    from core.data.laterals import lateral_paths
    return [load_png_gray(p) for paths in lateral_paths(data_dir, uids).values() for p in paths]


def fit_guard(collection: Collection, train_uids, *, limit: int = 5000, seed: int = 0) -> dict:
    """The out-of-distribution guard (core.model.guard), fitted on the training split's frontal
    films (at most ``limit``, a seeded sample, on large datasets) and, where the folder has
    them, its lateral films (the view stage). Training and the refit both fit it here."""
    from core.data.images import load_png_gray
    from core.model.guard import fit_ood
    keep = set(train_uids)
    ids = [i for r in collection.reports if r.uid in keep for i in r.image_ids]
    if len(ids) > limit:
        ids = sorted(random.Random(seed).sample(ids, limit))
    frontals = [load_png_gray(collection.image_paths[i]) for i in ids]
    return fit_ood(frontals, laterals=lateral_films(collection.root, keep) or None)
