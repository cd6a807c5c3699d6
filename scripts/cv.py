"""K-fold cross-validation of a training recipe over train+val (the test split stays unseen).

    python scripts/cv.py --data ../shared/iu-xray --name img15 --folds 5 --image-epochs 15 --unfrozen-epochs 0
    python scripts/cv.py --data ../shared/iu-xray --name img15 --summary-only     # aggregate what is done

Each fold holds out one fifth of train+val (folds stratified like the main split) and runs the
whole recipe on the rest, with its own inner validation split (15%) for everything the recipe
chooses on validation (best image epoch, early stopping, late fusion, temperatures,
thresholds). The held-out fold is scored once, for every text mode and head: out-of-fold
predictions, each made by a model that never trained or tuned on that report. Resumable:
finished folds are skipped, an interrupted fold resumes from its last.pt. Any TrainConfig flag
(see scripts/train.py) sets the recipe. The folds and the fold's run: core.training.kfold; the files'
layout: core.evaluation.cv_layout.

Writes ``runs/cv/<name>/fold<k>/oof_<mode>_<head>.csv`` and ``runs/cv/<name>/summary.json``:
per mode and head, each finding's AUC per fold (mean ± sd) and the pooled out-of-fold AUC with
its bootstrap 95% CI and positive count.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from scripts._cli import Parser, fail, run_main


def parse_args(argv=None):
    from core.training.config import add_config_arguments
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="recipe name: results go to --root/NAME")
    p.add_argument("--root", default="runs/cv", help="folder of the cross-validated recipes")
    p.add_argument("--folds", type=int, default=5, help="number of folds")
    p.add_argument("--only-fold", type=int, default=None, help="run just this fold")
    p.add_argument("--summary-only", action="store_true", help="train nothing: summarise the finished folds")
    p.add_argument("--split-from", default="weights", help="weights folder whose test split stays unseen")
    p.add_argument("--fold-seed", type=int, default=None,
                   help="seed of the folds and inner splits (default: --seed). A second run with another "
                        "--seed and the same --fold-seed trains on the same reports: a seed ensemble")
    add_config_arguments(p, skip=("out", "run_dir", "split_file", "fit_ood"))  # run_fold sets these per fold
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.fold_seed is None:
        args.fold_seed = args.seed
    from core.data.reports import DataLayoutError
    from core.data.sources import check_layout, load_collection
    from core.evaluation.cross_validation import summarise
    from core.evaluation.cv_layout import DONE, CvLayout
    from core.training.config import config_from_args
    from core.training.kfold import run_fold, write_folds
    layout = CvLayout(Path(args.root) / args.name)
    if not args.summary_only:
        try:
            check_layout(args.dataset, Path(args.data))
        except DataLayoutError as exc:
            fail(str(exc))
        os.environ.setdefault("CXR_RUNLOG", str(layout.runlog))  # keep folds out of the main run log
        reports = load_collection(args.dataset, Path(args.data), use_automatic=args.use_automatic,
                                  uncertain_policy=args.uncertain_policy).reports
        if args.max_reports:  # smoke runs: the trainer reads only the first reports too
            reports = reports[: args.max_reports]
        folds, pool = write_folds(layout, reports, Path(args.split_from), args.folds, args.fold_seed)
        recipe = config_from_args(args)
        for k, uids in enumerate(folds):
            if args.only_fold is not None and k != args.only_fold:
                continue
            if (layout.fold_dir(k) / DONE).is_file():
                print(f"fold {k}: done, skipped")
                continue
            print(f"fold {k}/{args.folds}: {len(uids)} held-out reports", flush=True)
            run_fold(recipe, layout, reports, uids, pool, k, args.fold_seed)
    summary = summarise(layout.root)
    if summary is None:
        fail(f"no finished fold in {layout.root}")
    layout.summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    for key, row in summary["results"].items():
        cells = "  ".join(f"{f[:5]} {v['fold_mean']:.3f}±{v['fold_sd']:.3f}" for f, v in row["findings"].items())
        print(f"{key:18s} macro {row['macro_fold_mean']:.3f}±{row['macro_fold_sd']:.3f}  {cells}")
    print(f"{summary['n_folds_done']}/{summary['n_folds']} folds; {layout.summary_file}")
    return 0


if __name__ == "__main__":
    run_main(main)
