"""Train the late-fusion model on IU X-ray (Open-I) or another dataset and drop the weights in place.

    python scripts/train.py --data ../shared/iu-xray --out weights            # CPU default (Open-I)
    torchrun --nproc_per_node 4 scripts/train.py --data DATA --out weights --image-size 224
    python scripts/train.py --dataset mimic-cxr --data MIMIC --out w --uncertain-policy ignore \
        --external-data ../shared/iu-xray                                     # + external validation on IU
    python scripts/train.py --dataset chexpert --data CheXpert-v1.0-small --out w \
        --image-weights nih-pc-chex-...-densenet121-d121-...-best.pt          # torchxrayvision weights

Datasets (``--dataset``): openi, mimic-cxr, chexpert, csv (see core.data.sources). Multi-node:
``torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 ...``.

Resumable: rerun the same command after an interruption and it continues from
``--run-dir``/last.pt. Progress goes to the terminal (tqdm) and to the SQLite run log
(``runs/runs.db``, or $CXR_RUNLOG) that the app's training monitor reads.
Defaults (one table, nanoGPT style) are the fields of core.training.TrainConfig.
"""
from __future__ import annotations

import time
from pathlib import Path

from scripts._cli import Parser, fail, run_main


def parse_args(argv=None):
    from core.data.sources import DATASETS
    from core.training.config import add_config_arguments
    p = Parser(description=__doc__.splitlines()[0])
    add_config_arguments(p)
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation at the end")
    p.add_argument("--external-data", help="after training, score every study of this dataset (external validation)")
    p.add_argument("--external-dataset", default="openi", choices=list(DATASETS), help="layout of --external-data")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.data.reports import DataLayoutError
    from core.data.sources import check_layout
    from core.model.checkpoint import save_weights
    from core.model.fusion import BackboneUnavailable, image_weights_info
    from core.training.config import config_from_args
    from core.training.outputs import build_description, evaluate_test_split, external_validation, fit_ood_guard
    from core.training.trainer import Trainer
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
    cfg = config_from_args(args)
    t0 = time.time()
    try:
        trainer = Trainer(cfg)
    except (DataLayoutError, BackboneUnavailable) as exc:
        fail(str(exc))
    result = trainer.fit()
    if not trainer.process.main:
        return 0
    desc = build_description(trainer, result, cfg)
    ood = fit_ood_guard(trainer) if cfg.fit_ood else None
    out = Path(cfg.out)
    if not args.no_eval:
        from core.evaluation.refit import refit
        desc = desc.updated(test_summary=evaluate_test_split(trainer, desc, out))
        # held-out evidence per finding and report-QA operating points (core.evaluation)
        desc = refit(trainer.model, trainer.tokenizer, desc, trainer.data.reports, Path(cfg.data), out / "eval",
                     refit_thresholds=False, bank=trainer.data.bank)
    if args.external_data:
        desc = desc.updated(external_validation=[external_validation(trainer, desc, out, args.external_dataset,
                                                                     Path(args.external_data))])
    desc = desc.updated(timings={**desc.timings, "wall_s": time.time() - t0})
    path = save_weights(trainer.model, desc, out, ood=ood)
    if trainer.log:
        trainer.log.finish(best_val_macro_auc=result["val_score"])
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f}s")
    for k, v in (desc.test_summary or {}).items():
        print(f"  test {k:22s} macro AUC {v['macro_auc']:.4f} [{v['macro_auc_ci'][0]:.3f}, {v['macro_auc_ci'][1]:.3f}]")
    for ext in desc.external_validation or []:
        for k, v in ext["results"].items():
            print(f"  external {ext['validated_on']} {k:16s} macro AUC {v['macro_auc']:.4f} "
                  f"[{v['macro_auc_ci'][0]:.3f}, {v['macro_auc_ci'][1]:.3f}] ({v['n_studies']} studies)")
    # an int8 calibration is made for one image encoder: one left from earlier weights is ignored
    print(f"to serve the image encoder in int8 (about half its time): python scripts/calibrate_int8.py "
          f"--weights {out} --data {cfg.data}")
    return 0


if __name__ == "__main__":
    run_main(main)
