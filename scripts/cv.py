"""K-fold cross-validation of a training recipe over train+val (the test split stays unseen).

    python scripts/cv.py --data ../shared/iu-xray --name img15 --folds 5 --image-epochs 15 --unfrozen-epochs 0
    python scripts/cv.py --data ../shared/iu-xray --name img15 --summary-only     # aggregate what is done

Each fold holds out one fifth of train+val (folds stratified like the main split) and runs the
whole recipe on the rest, with its own inner validation split (15%) for everything the recipe
chooses on validation (best image epoch, early stopping, late fusion, temperatures,
thresholds). The held-out fold is scored once, for every text mode and head: out-of-fold
predictions, each made by a model that never trained or tuned on that report. Resumable:
finished folds are skipped, an interrupted fold resumes from its last.pt. Any TrainConfig flag
(see scripts/train.py) sets the recipe.

Writes ``runs/cv/<name>/fold<k>/oof_<mode>_<head>.csv`` and ``runs/cv/<name>/summary.json``:
per mode and head, each finding's AUC per fold (mean ± sd) and the pooled out-of-fold AUC with
its bootstrap 95% CI and positive count.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import fields
from pathlib import Path

from scripts._cli import Parser, fail, run_main

INNER_VAL = 0.15


def parse_args(argv=None):
    from core.training.trainer import TrainConfig
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="recipe name: results go to --root/NAME")
    p.add_argument("--root", default="runs/cv")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only-fold", type=int, default=None, help="run just this fold")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--split-from", default="weights", help="weights folder whose test split stays unseen")
    p.add_argument("--fold-seed", type=int, default=None,
                   help="seed of the folds and inner splits (default: --seed). A second run with another "
                        "--seed and the same --fold-seed trains on the same reports: a seed ensemble")
    for f in fields(TrainConfig):
        if f.name in ("out", "run_dir", "split_file", "fit_ood"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, type=kind, required=f.name == "data", default=f.default)
    return p.parse_args(argv)


def stratified_folds(reports, uids: list[str], k: int, seed: int) -> list[list[str]]:
    """Each report goes to a fold, round-robin within its stratum (its rarest positive
    finding, or negative), so every fold gets its share of the rare findings."""
    from core.data.labels import FINDINGS
    keep = set(uids)
    pool = [r for r in reports if r.uid in keep]
    prevalence = [sum(r.labels[i] for r in pool) for i in range(len(FINDINGS))]
    strata: dict[int, list[str]] = {}
    for r in pool:
        pos = [i for i, y in enumerate(r.labels) if y]
        strata.setdefault(min(pos, key=lambda i: prevalence[i]) if pos else -1, []).append(r.uid)
    rng = random.Random(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda u: (len(u), u))
        rng.shuffle(members)
        for j, uid in enumerate(members):
            folds[(j + offset) % k].append(uid)
        offset += len(members)  # the next stratum starts where this one ended: folds stay equal in size
    return [sorted(f, key=lambda u: (len(u), u)) for f in folds]


def pool_and_test(reports, split_from: Path, seed: int) -> tuple[list[str], list[str]]:
    from core.data.reports import split_reports
    from core.model.description import WeightsError, read_description
    try:
        split = read_description(split_from).split or split_reports(reports, seed=seed)
    except WeightsError:  # no weights there: a seeded split of the pool
        split = split_reports(reports, seed=seed)
    return list(split["train"]) + list(split["val"]), list(split["test"])


def run_fold(args, reports, fold_uids: list[str], pool: list[str], test: list[str], fold: int, out: Path) -> None:
    from core.data.reports import split_reports
    from core.evaluation.eval_files import eval_name, eval_pairs
    from core.evaluation.split_eval import predict_reports, write_predictions_csv
    from core.model.description import ModelDescription, Preprocessing
    from core.training.trainer import TrainConfig, Trainer
    fold_dir = out / f"fold{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    held = set(fold_uids)
    rest = [r for r in reports if r.uid in set(pool) - held]
    inner = split_reports(rest, seed=args.fold_seed + 101 * (fold + 1), fractions=(1 - INNER_VAL, INNER_VAL, 0.0))
    split = {"train": inner["train"], "val": inner["val"], "test": sorted(held, key=lambda u: (len(u), u))}
    (fold_dir / "split.json").write_text(json.dumps(split) + "\n")
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    cfg = TrainConfig(**{**values, "out": str(fold_dir), "run_dir": str(fold_dir), "fit_ood": False,
                         "split_file": str(fold_dir / "split.json")})
    t0 = time.time()
    trainer = Trainer(cfg)
    trainer.fit()
    held_reports = [r for r in trainer.reports if r.uid in held]
    meta = ModelDescription(preprocessing=Preprocessing(image_size=cfg.image_size, mean=trainer.mean, std=trainer.std),
                            text_max_len=cfg.text_max_len)
    probs = {}
    for mode, head in eval_pairs():
        if mode not in probs:
            probs[mode] = predict_reports(trainer.model, trainer.tokenizer, meta, held_reports, Path(cfg.data), mode,
                                          bank=trainer.bank)
        write_predictions_csv(fold_dir / f"{eval_name('oof', mode, head)}.csv", held_reports, probs[mode][head])
    if trainer.lateral_rows:  # the image head over both views: frontal and lateral averaged
        from core.evaluation.split_eval import predict_views
        write_predictions_csv(fold_dir / "oof_none_views.csv", held_reports,
                              predict_views(trainer.model, meta, held_reports, trainer.bank, trainer.lateral_rows))
    (fold_dir / "fold.json").write_text(json.dumps({
        "fold": fold, "n_train": len(split["train"]), "n_val": len(split["val"]), "n_held_out": len(held),
        "seconds": time.time() - t0, "timings": {k: v for k, v in trainer.timings.items()
                                                 if not isinstance(v, list)}}, indent=2) + "\n")
    (fold_dir / "last.pt").unlink(missing_ok=True)  # 150 MB a fold; the OOF files are the result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.fold_seed is None:
        args.fold_seed = args.seed
    from core.data.reports import DataLayoutError
    from core.data.sources import check_layout, load_collection
    from core.evaluation.cross_validation import summarise
    out = Path(args.root) / args.name
    if not args.summary_only:
        try:
            check_layout(args.dataset, Path(args.data))
        except DataLayoutError as exc:
            fail(str(exc))
        os.environ.setdefault("CXR_RUNLOG", str(out / "runs.db"))  # keep folds out of the main run log
        reports = load_collection(args.dataset, Path(args.data), use_automatic=args.use_automatic,
                                  uncertain_policy=args.uncertain_policy).reports
        if args.max_reports:  # smoke runs: the trainer reads only the first reports too
            reports = reports[: args.max_reports]
        pool, test = pool_and_test(reports, Path(args.split_from), args.fold_seed)
        known = {r.uid for r in reports}
        pool = [u for u in pool if u in known]
        folds = stratified_folds(reports, pool, args.folds, args.fold_seed)
        out.mkdir(parents=True, exist_ok=True)
        (out / "folds.json").write_text(json.dumps({"folds": folds, "test_excluded": len(test)}) + "\n")
        for k, uids in enumerate(folds):
            if args.only_fold is not None and k != args.only_fold:
                continue
            if (out / f"fold{k}" / "fold.json").is_file():
                print(f"fold {k}: done, skipped")
                continue
            print(f"fold {k}/{args.folds}: {len(uids)} held-out reports", flush=True)
            run_fold(args, reports, uids, pool, test, k, out)
    summary = summarise(out)
    if summary is None:
        fail(f"no finished fold in {out}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for key, row in summary["results"].items():
        cells = "  ".join(f"{f[:5]} {v['fold_mean']:.3f}±{v['fold_sd']:.3f}" for f, v in row["findings"].items())
        print(f"{key:18s} macro {row['macro_fold_mean']:.3f}±{row['macro_fold_sd']:.3f}  {cells}")
    print(f"{summary['n_folds_done']}/{summary['n_folds']} folds; {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    run_main(main)
