"""What is fitted after training, on validation and the held-out evaluation: operating
thresholds, held-out evidence and report-QA operating points. Used at the end of
``scripts/train.py`` and by ``scripts/refit_operating_points.py`` for existing weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.labels import FINDINGS, HEADS, TEXT_MODES
from core.evaluation.evidence import build_evidence, image_reliable
from core.evaluation.operating_points import fit_discordance, operating_threshold
from core.evaluation.split_eval import predict_reports, select_reports

QA_BUDGET = 0.04   # validation share of unedited reports flagged for any finding (target <= 5% unseen)


def prevalence(reports, split: dict) -> np.ndarray:
    train = select_reports(reports, "train", split)
    return np.array([r.labels for r in train], dtype=float).mean(axis=0)


def val_probabilities(model, tokenizer, metadata: dict, reports, data_dir: Path, **images) -> tuple[dict, np.ndarray]:
    """({mode: {head: reports x findings}}, labels) on the validation split. ``images``:
    ``bank=`` / ``paths=`` as core.evaluation.split_eval.predict_reports takes them."""
    val = select_reports(reports, "val", metadata["split"])
    probs = {m: predict_reports(model, tokenizer, metadata, val, Path(data_dir), m, **images) for m in TEXT_MODES}
    return probs, np.array([r.labels for r in val], dtype=float)


def thresholds(probs: dict, Y: np.ndarray, prev: np.ndarray) -> dict:
    out = {}
    for mode in TEXT_MODES:
        out[mode] = {}
        for head in HEADS:
            if head == "text" and mode == "none":
                out[mode][head] = {f: 0.5 for f in FINDINGS}
                continue
            P = probs[mode][head]
            out[mode][head] = {f: operating_threshold(Y[:, k], P[:, k], prev[k]) for k, f in enumerate(FINDINGS)}
    return out


def report_qa(metadata: dict, probs: dict, Y: np.ndarray, *, budget: float = QA_BUDGET) -> dict:
    supported = [f for f, ok in image_reliable(metadata, FINDINGS).items() if ok]
    text_thr = np.array([metadata["thresholds"]["report"]["text"][f] for f in FINDINGS])
    block = fit_discordance(probs["report"]["image"], probs["report"]["text"], Y, text_thr, list(FINDINGS),
                            supported, budget=budget)
    block["supported"] = supported
    return block


def refit(model, tokenizer, metadata: dict, reports, data_dir: Path, eval_dir: Path, *,
          cv_summary: dict | None = None, refit_thresholds: bool = True, **images) -> dict:
    """A copy of ``metadata`` with thresholds (shrunk rule; training already fits them so),
    evidence from ``eval_dir`` and report-QA operating points."""
    meta = dict(metadata)
    probs, Y = val_probabilities(model, tokenizer, meta, reports, data_dir, **images)
    if refit_thresholds:
        meta["thresholds"] = thresholds(probs, Y, prevalence(reports, meta["split"]))
        meta["threshold_rule"] = ("Youden's J on validation shrunk toward the training prevalence in logit space, "
                                  "weight n_pos / (n_pos + 10) (core.evaluation.operating_points)")
    meta["evidence"] = build_evidence(eval_dir, list(FINDINGS), list(TEXT_MODES), list(HEADS), cv_summary=cv_summary)
    meta["discordance"] = report_qa(meta, probs, Y)
    return meta


def wilson_ci(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson interval of a proportion k/n (None when n = 0)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def rescore_thresholds(eval_dir: Path, metadata: dict) -> None:
    """Sensitivity and specificity (with Wilson CIs) at the weights' thresholds, written into
    each ``<split>_<mode>_<head>.json`` from its per-study CSV; AUCs do not depend on them."""
    import json

    from core.evaluation.cross_validation import read_predictions_csv
    for path in sorted(Path(eval_dir).glob("*_*_*.json")):
        csv_path = path.with_suffix(".csv")
        res = json.loads(path.read_text())
        mode, head = res.get("text_mode"), res.get("head")
        if not csv_path.is_file() or mode not in metadata["thresholds"] or head not in HEADS:
            continue
        _, P, Y = read_predictions_csv(csv_path)
        thr = metadata["thresholds"][mode][head]
        res["thresholds"] = thr
        for key in ("sensitivity", "specificity", "sensitivity_ci", "specificity_ci"):
            res[key] = {}
        for k, f in enumerate(FINDINGS):
            pred = P[:, k] >= thr[f]
            pos, neg = Y[:, k] == 1, Y[:, k] == 0
            res["sensitivity"][f] = float(pred[pos].mean()) if pos.any() else float("nan")
            res["specificity"][f] = float((~pred[neg]).mean()) if neg.any() else float("nan")
            res["sensitivity_ci"][f] = wilson_ci(int(pred[pos].sum()), int(pos.sum()))
            res["specificity_ci"][f] = wilson_ci(int((~pred[neg]).sum()), int(neg.sum()))
        res["model"] = metadata.get("version")
        res["threshold_rule"] = metadata.get("threshold_rule")
        path.write_text(json.dumps(res, indent=2) + "\n")


def _gray(path: Path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def lateral_films(data_dir: Path, uids) -> list[np.ndarray]:
    """Lateral films of these reports, where an Open-I folder has them (core.data.laterals); [] otherwise."""
    from core.data.laterals import lateral_paths
    return [_gray(p) for paths in lateral_paths(data_dir, uids).values() for p in paths]


def fit_guard(data_dir: Path, reports, train_uids: list[str]) -> dict:
    """The out-of-distribution guard (core.model.guard) on the training split's frontal films and,
    where the folder has them, its lateral films (the view stage)."""
    from core.model.guard import fit_ood
    keep = set(train_uids)
    frontals = [_gray(Path(data_dir) / "NLMCXR_png" / f"{i}.png")
                for r in reports if r.uid in keep for i in r.image_ids]
    return fit_ood(frontals, laterals=lateral_films(data_dir, keep) or None)
