"""Train the late-fusion model on IU X-ray (Open-I) or another dataset and drop the weights in place.

    python scripts/train.py --data ../shared/iu-xray --out weights            # CPU default (Open-I)
    torchrun --nproc_per_node 4 scripts/train.py --data DATA --out weights --image-size 224
    python scripts/train.py --dataset mimic-cxr --data MIMIC --out w --uncertain-policy ignore \
        --external-data ../shared/iu-xray                                     # + external validation on IU
    python scripts/train.py --dataset chexpert --data CheXpert-v1.0-small --out w \
        --image-weights nih-pc-chex-...-densenet121-d121-...-best.pt          # torchxrayvision weights

Datasets (``--dataset``): openi, mimic-cxr, chexpert, csv (see core.sources). Multi-node:
``torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 ...``.

Resumable: rerun the same command after an interruption and it continues from
``--run-dir``/last.pt. Progress goes to the terminal (tqdm) and to the SQLite run log
(``runs/runs.db``, or $CXR_RUNLOG) that the app's training monitor reads.
Defaults (one table, nanoGPT style) are the fields of core.training.TrainConfig.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, fields  # noqa: E402

from scripts._cli import Parser, fail, run_main  # noqa: E402


def parse_args(argv=None):
    from core.sources import DATASETS
    from core.sources.policy import UNCERTAIN_POLICIES
    from core.training import TrainConfig
    p = Parser(description=__doc__.splitlines()[0])
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            kwargs = {"required": True} if f.name == "data" else {"default": f.default}
            if f.name == "unfreeze":
                kwargs["choices"] = ["auto", "text", "both", "none"]
            if f.name == "dataset":
                kwargs["choices"] = list(DATASETS)
            if f.name == "uncertain_policy":
                kwargs["choices"] = list(UNCERTAIN_POLICIES)
            p.add_argument(flag, type=kind, **kwargs)
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation at the end")
    p.add_argument("--external-data", help="after training, score every study of this dataset (external validation)")
    p.add_argument("--external-dataset", default="openi", choices=list(DATASETS))
    return p.parse_args(argv)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def build_metadata(trainer, result: dict, cfg) -> dict:
    from core.labels import FINDINGS, TEXT_MODES
    return {
        "format": "cxr-fusion/1",
        "version": time.strftime("%Y%m%d-%H%M%S") + "-" + git_commit()[:8],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "labels": list(FINDINGS),
        "text_modes": list(TEXT_MODES),
        "label_source": trainer.collection.label_source,
        "aux_vocab": trainer.aux_vocab,
        "thresholds": result["thresholds"],
        "preprocessing": {"image_size": cfg.image_size, "mean": trainer.mean, "std": trainer.std,
                          "color": "grayscale", "resize": "square bilinear"},
        "backbones": {"image": "torchvision densenet121", "image_weights": cfg.image_weights,
                      "text": cfg.text_backbone, "image_pretraining": trainer.image_prior},
        # every collection whose images the image encoder has seen: its pretraining's and this run's
        "image_encoder_datasets": encoder_datasets(trainer),
        "trained_on": trainer.collection.metadata(),
        "text_max_len": cfg.text_max_len,
        "training_config": asdict(cfg),
        "split": trainer.split,
        "val": {"score": result["val_score"], "auc": result["val_auc"]},
        "timings": {k: (float(sum(v) / len(v)) if isinstance(v, list) else v) for k, v in trainer.timings.items()},
        "data": {"name": trainer.collection.title, "license": trainer.collection.license,
                 "citation": trainer.collection.citation, "n_reports": len(trainer.reports)},
    }


def encoder_datasets(trainer) -> list[str]:
    return sorted(set(trainer.image_prior["datasets"]) | {trainer.cfg.dataset})


def fit_ood(trainer, limit: int = 5000):
    """Out-of-distribution guard fitted on the training images (see core.ood); at most
    ``limit`` of them (a seeded sample) on large datasets."""
    import random
    from core.imaging import load_png_gray
    from core.ood import fit_ood as fit
    rows = trainer.samples["train"].image_rows
    if len(rows) > limit:
        rows = sorted(random.Random(trainer.cfg.seed).sample(rows, limit))
    paths = trainer.collection.image_paths
    laterals = []
    if trainer.cfg.dataset == "openi":  # the view stage learns laterals where the folder has them
        from core.posthoc import lateral_films
        laterals = lateral_films(Path(trainer.cfg.data), trainer.split["train"])
    return fit([load_png_gray(paths[trainer.bank.ids[r]]) for r in rows], laterals=laterals or None)


def external_validation(trainer, metadata: dict, out: Path, dataset: str, data: Path) -> dict:
    """Score every study of another dataset (split ``all``), every text mode and head: the
    'trained on X, validated on Y' numbers of the model card."""
    from core.evaluation import metrics_json, predict_reports, write_predictions_csv
    from core.labels import TEXT_MODES
    from core.sources import load_collection
    import numpy as np
    coll = load_collection(dataset, data, uncertain_policy=trainer.cfg.uncertain_policy)
    Y = np.array([r.labels for r in coll.reports], dtype=float)
    results = {}
    (out / "eval").mkdir(parents=True, exist_ok=True)
    for mode in TEXT_MODES:
        if mode != "none" and not coll.has_text:
            continue
        probs = predict_reports(trainer.model, trainer.tokenizer, metadata, coll.reports, data, mode,
                                paths=coll.image_paths)
        for head in ("fusion", "image", "text"):
            if head == "text" and mode == "none":
                continue
            res = metrics_json(Y, probs[head], thresholds=metadata["thresholds"][mode][head])
            res.update(split="all", text_mode=mode, head=head, model=metadata["version"],
                       trained_on=trainer.cfg.dataset, validated_on=dataset)
            (out / "eval" / f"external_{dataset}_{mode}_{head}.json").write_text(json.dumps(res, indent=2) + "\n")
            write_predictions_csv(out / "eval" / f"external_{dataset}_{mode}_{head}.csv", coll.reports, probs[head])
            results[f"{mode}/{head}"] = {"macro_auc": res["macro_auc"], "macro_auc_ci": res["macro_auc_ci"],
                                         "auc": res["auc"], "n_studies": res["n_studies"]}
    return {"trained_on": trainer.cfg.dataset, "validated_on": dataset, "title": coll.title, "split": "all",
            "n_studies": len(coll.reports), "results": results}


def evaluate_all(trainer, metadata: dict, out: Path) -> dict:
    """Test-split metrics of every text mode and head, plus the keyword baseline."""
    from core.evaluation import keyword_baseline_json, metrics_json, predict_reports, write_predictions_csv
    from core.labels import TEXT_MODES
    import numpy as np
    test = [r for r in trainer.reports if r.uid in set(trainer.split["test"])]
    Y = np.array([r.labels for r in test], dtype=float)
    summary = {}
    (out / "eval").mkdir(parents=True, exist_ok=True)
    for mode in TEXT_MODES:
        probs = predict_reports(trainer.model, trainer.tokenizer, metadata, test, Path(trainer.cfg.data), mode,
                                bank=trainer.bank)
        for head in ("fusion", "image", "text"):
            if head == "text" and mode == "none":
                continue
            res = metrics_json(Y, probs[head], thresholds=metadata["thresholds"][mode][head])
            res.update(split="test", text_mode=mode, head=head, model=metadata["version"])
            (out / "eval" / f"test_{mode}_{head}.json").write_text(json.dumps(res, indent=2) + "\n")
            write_predictions_csv(out / "eval" / f"test_{mode}_{head}.csv", test, probs[head])  # ROC/calibration plots
            summary[f"{mode}/{head}"] = {"macro_auc": res["macro_auc"], "macro_auc_ci": res["macro_auc_ci"],
                                         "auc": res["auc"], "mean_ece": res["mean_ece"]}
    base = keyword_baseline_json(test)
    base.update(split="test", text_mode="report", head="keyword-baseline")
    (out / "eval" / "test_keyword_baseline.json").write_text(json.dumps(base, indent=2) + "\n")
    summary["keyword_baseline"] = {"macro_auc": base["macro_auc"], "macro_auc_ci": base["macro_auc_ci"],
                                   "auc": base["auc"]}
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.checkpoint import save_weights
    from core.data import DataLayoutError
    from core.model import BackboneUnavailable, image_weights_info
    from core.sources import check_layout
    from core.training import Trainer, TrainConfig
    try:
        check_layout(args.dataset, Path(args.data))
        if args.external_data:
            check_layout(args.external_dataset, Path(args.external_data))
            seen = set(image_weights_info(args.image_weights, args.image_weights_datasets)["datasets"]) | {args.dataset}
            if args.external_dataset in seen:
                fail(f"the image encoder has seen {args.external_dataset} (pretraining or this run): scoring it "
                     "there is not an external validation")
    except (DataLayoutError, BackboneUnavailable) as exc:
        fail(str(exc))
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    t0 = time.time()
    try:
        trainer = Trainer(cfg)
    except (DataLayoutError, BackboneUnavailable) as exc:
        fail(str(exc))
    result = trainer.fit()
    if trainer.rank != 0:
        return 0
    metadata = build_metadata(trainer, result, cfg)
    ood = fit_ood(trainer) if cfg.fit_ood else None
    out = Path(cfg.out)
    if not args.no_eval:
        from core.posthoc import refit
        metadata["test_summary"] = evaluate_all(trainer, metadata, out)
        # held-out evidence per finding and report-QA operating points (core.evidence, core.operating)
        metadata = refit(trainer.model, trainer.tokenizer, metadata, trainer.reports, Path(cfg.data), out / "eval",
                         refit_thresholds=False, bank=trainer.bank)
    if args.external_data:
        metadata["external_validation"] = [external_validation(trainer, metadata, out, args.external_dataset,
                                                               Path(args.external_data))]
    metadata["timings"]["wall_s"] = time.time() - t0
    path = save_weights(trainer.model, metadata, out, ood=ood)
    if trainer.log:
        trainer.log.finish(best_val_macro_auc=result["val_score"])
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f}s")
    for k, v in metadata.get("test_summary", {}).items():
        print(f"  test {k:22s} macro AUC {v['macro_auc']:.4f} [{v['macro_auc_ci'][0]:.3f}, {v['macro_auc_ci'][1]:.3f}]")
    for ext in metadata.get("external_validation", []):
        for k, v in ext["results"].items():
            print(f"  external {ext['validated_on']} {k:16s} macro AUC {v['macro_auc']:.4f} "
                  f"[{v['macro_auc_ci'][0]:.3f}, {v['macro_auc_ci'][1]:.3f}] ({v['n_studies']} studies)")
    return 0


if __name__ == "__main__":
    run_main(main)
