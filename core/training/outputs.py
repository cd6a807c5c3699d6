"""What a finished training run writes next to the weights (scripts/train.py, rank 0): the
metadata, the out-of-distribution guard fitted on the training images, the test-split
evaluation files and, when asked, an external validation on another dataset.

    description = build_description(trainer, result, cfg)
    description = description.updated(test_summary=evaluate_test_split(trainer, description, out))
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from core.data.labels import TextMode
from core.evaluation.eval_files import BASELINE, eval_name, eval_pairs
from core.model.description import ModelDescription, Preprocessing


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parents[2]).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def build_description(trainer, result: dict, cfg) -> ModelDescription:
    """The new weights' description: findings, thresholds, preprocessing, provenance, split, timings."""
    from core.data.labels import FINDINGS, HEADS, TEXT_MODES
    return ModelDescription(
        findings=FINDINGS, heads=HEADS, text_modes=TEXT_MODES,
        format="cxr-fusion/1",
        version=time.strftime("%Y%m%d-%H%M%S") + "-" + git_commit()[:8],
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        git_commit=git_commit(),
        label_source=trainer.data.collection.label_source,
        thresholds=result["thresholds"],
        preprocessing=Preprocessing(image_size=cfg.image_size, mean=trainer.data.mean, std=trainer.data.std),
        backbones={"image": "torchvision densenet121", "image_weights": cfg.image_weights,
                   "text": cfg.text_backbone, "image_pretraining": trainer.data.image_prior},
        trained_on=trainer.data.collection.metadata(),
        # every collection whose images the image encoder has seen: its pretraining's and this run's
        image_encoder_datasets=encoder_datasets(trainer),
        text_max_len=cfg.text_max_len,
        training_config=asdict(cfg),
        split=trainer.data.split,
        val={"score": result["val_score"], "auc": result["val_auc"]},
        timings={k: (float(sum(v) / len(v)) if isinstance(v, list) else v) for k, v in trainer.timings.items()},
        data={"name": trainer.data.collection.title, "license": trainer.data.collection.license,
              "citation": trainer.data.collection.citation, "n_reports": len(trainer.data.reports)},
        extra={"aux_vocab": trainer.data.aux_vocab})


def encoder_datasets(trainer) -> list[str]:
    return sorted(set(trainer.data.image_prior["datasets"]) | {trainer.cfg.dataset})


def fit_ood_guard(trainer, limit: int = 5000):
    """Out-of-distribution guard fitted on the training images (core.evaluation.refit.fit_guard)."""
    from core.evaluation.refit import fit_guard
    return fit_guard(trainer.data.collection, trainer.data.split["train"], limit=limit, seed=trainer.cfg.seed)


def external_validation(trainer, desc: ModelDescription, out: Path, dataset: str, data: Path) -> dict:
    """Score every study of another dataset (split ``all``), every text mode and head: the
    'trained on X, validated on Y' numbers of the model card."""
    import numpy as np

    from core.data.sources import load_collection
    from core.evaluation.split_eval import metrics_json, predict_reports, write_predictions_csv
    coll = load_collection(dataset, data, uncertain_policy=trainer.cfg.uncertain_policy)
    Y = np.array([r.labels for r in coll.reports], dtype=float)
    results, probs = {}, {}
    (out / "eval").mkdir(parents=True, exist_ok=True)
    for mode, head in eval_pairs():
        if mode != TextMode.NONE and not coll.has_text:
            continue
        if mode not in probs:
            probs[mode] = predict_reports(trainer.model, trainer.tokenizer, desc, coll.reports, data, mode,
                                          paths=coll.image_paths)
        res = metrics_json(Y, probs[mode][head], thresholds=desc.thresholds_for(mode, head),
                           findings=desc.findings)
        res.update(split="all", text_mode=mode, head=head, model=desc.version,
                   trained_on=trainer.cfg.dataset, validated_on=dataset)
        name = eval_name(f"external_{dataset}", mode, head)
        (out / "eval" / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
        write_predictions_csv(out / "eval" / f"{name}.csv", coll.reports, probs[mode][head])
        results[f"{mode}/{head}"] = {"macro_auc": res["macro_auc"], "macro_auc_ci": res["macro_auc_ci"],
                                     "auc": res["auc"], "n_studies": res["n_studies"]}
    return {"trained_on": trainer.cfg.dataset, "validated_on": dataset, "title": coll.title, "split": "all",
            "n_studies": len(coll.reports), "results": results}


def evaluate_test_split(trainer, desc: ModelDescription, out: Path) -> dict:
    """Test-split metrics of every text mode and head, plus the keyword baseline, written to
    ``out/eval/`` (core.evaluation.eval_files names them); returns the summary kept in the metadata."""
    import numpy as np

    from core.evaluation.split_eval import keyword_baseline_json, metrics_json, predict_reports, write_predictions_csv
    test = [r for r in trainer.data.reports if r.uid in set(trainer.data.split["test"])]
    Y = np.array([r.labels for r in test], dtype=float)
    summary, probs = {}, {}
    (out / "eval").mkdir(parents=True, exist_ok=True)
    for mode, head in eval_pairs():
        if mode not in probs:
            probs[mode] = predict_reports(trainer.model, trainer.tokenizer, desc, test, Path(trainer.cfg.data),
                                          mode, bank=trainer.data.bank)
        res = metrics_json(Y, probs[mode][head], thresholds=desc.thresholds_for(mode, head),
                           findings=desc.findings)
        res.update(split="test", text_mode=mode, head=head, model=desc.version)
        name = eval_name("test", mode, head)
        (out / "eval" / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
        write_predictions_csv(out / "eval" / f"{name}.csv", test, probs[mode][head])  # ROC/calibration plots
        summary[f"{mode}/{head}"] = {"macro_auc": res["macro_auc"], "macro_auc_ci": res["macro_auc_ci"],
                                     "auc": res["auc"], "mean_ece": res["mean_ece"]}
    base = keyword_baseline_json(test)
    base.update(split="test", text_mode="report", head="keyword-baseline")
    (out / "eval" / f"{BASELINE}.json").write_text(json.dumps(base, indent=2) + "\n")
    summary["keyword_baseline"] = {"macro_auc": base["macro_auc"], "macro_auc_ci": base["macro_auc_ci"],
                                   "auc": base["auc"]}
    return summary
