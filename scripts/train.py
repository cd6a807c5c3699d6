"""Train the late-fusion model on IU X-ray (Open-I) and drop the weights in place.

    python scripts/train.py --data ../shared/iu-xray --out weights            # CPU default
    torchrun --nproc_per_node 4 scripts/train.py --data DATA --out weights --image-size 224

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
            p.add_argument(flag, type=kind, **kwargs)
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation at the end")
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
        "label_source": "MeSH major terms" + (" + automatic terms" if cfg.use_automatic else ""),
        "aux_vocab": trainer.aux_vocab,
        "thresholds": result["thresholds"],
        "preprocessing": {"image_size": cfg.image_size, "mean": trainer.mean, "std": trainer.std,
                          "color": "grayscale", "resize": "square bilinear"},
        "backbones": {"image": "torchvision densenet121", "image_weights": cfg.image_weights,
                      "text": cfg.text_backbone},
        "text_max_len": cfg.text_max_len,
        "training_config": asdict(cfg),
        "split": trainer.split,
        "val": {"score": result["val_score"], "auc": result["val_auc"]},
        "timings": {k: (float(sum(v) / len(v)) if isinstance(v, list) else v) for k, v in trainer.timings.items()},
        "data": {"name": "Indiana University Chest X-ray Collection (Open-I)", "license": "CC BY-NC-ND 4.0",
                 "citation": "Demner-Fushman D, et al. Preparing a collection of radiology examinations for "
                             "distribution and retrieval. J Am Med Inform Assoc. 2016;23(2):304-310. "
                             "doi:10.1093/jamia/ocv080",
                 "n_reports": len(trainer.reports)},
    }


def fit_ood(trainer):
    """Out-of-distribution guard fitted on the training images (see core.ood)."""
    from core.imaging import load_png_gray
    from core.ood import fit_ood as fit
    png = Path(trainer.cfg.data) / "NLMCXR_png"
    rows = trainer.samples["train"].image_rows
    return fit([load_png_gray(png / f"{trainer.bank.ids[r]}.png") for r in rows])


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
    from core.data import DataLayoutError, check_layout
    from core.model import BackboneUnavailable
    from core.training import Trainer, TrainConfig
    try:
        check_layout(Path(args.data))
    except DataLayoutError as exc:
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
        metadata["test_summary"] = evaluate_all(trainer, metadata, out)
    metadata["timings"]["wall_s"] = time.time() - t0
    path = save_weights(trainer.model, metadata, out, ood=ood)
    if trainer.log:
        trainer.log.finish(best_val_macro_auc=result["val_score"])
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f}s")
    for k, v in metadata.get("test_summary", {}).items():
        print(f"  test {k:22s} macro AUC {v['macro_auc']:.4f} [{v['macro_auc_ci'][0]:.3f}, {v['macro_auc_ci'][1]:.3f}]")
    return 0


if __name__ == "__main__":
    run_main(main)
