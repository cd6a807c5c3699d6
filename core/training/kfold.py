"""K-fold cross-validation of a training recipe over train+val (scripts/cv.py): the folds, each
fold's inner split, and one fold's run, which trains the recipe and scores its held-out reports.
Where the files go: core.evaluation.cv_layout."""
from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

from core.evaluation.cv_layout import DONE, SPLIT, VIEWS, CvLayout, oof_key, oof_path
from core.training.config import TrainConfig

INNER_VAL = 0.15  # each fold's validation share of what it trains on


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
    """(train+val uids, test uids) of the weights in ``split_from`` (their test split stays unseen),
    or of a seeded split when there are none."""
    from core.data.reports import split_reports
    from core.model.description import WeightsError, read_description
    try:
        split = read_description(split_from).split or split_reports(reports, seed=seed)
    except WeightsError:  # no weights there: a seeded split of the pool
        split = split_reports(reports, seed=seed)
    return list(split["train"]) + list(split["val"]), list(split["test"])


def write_folds(layout: CvLayout, reports, split_from: Path, k: int,
                fold_seed: int) -> tuple[list[list[str]], list[str]]:
    """The folds of the pool (written to ``folds.json``) and the pool itself."""
    pool, test = pool_and_test(reports, split_from, fold_seed)
    known = {r.uid for r in reports}
    pool = [u for u in pool if u in known]
    folds = stratified_folds(reports, pool, k, fold_seed)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.folds_file.write_text(json.dumps({"folds": folds, "test_excluded": len(test)}) + "\n")
    return folds, pool


def run_fold(recipe: TrainConfig, layout: CvLayout, reports, held_out: list[str], pool: list[str], fold: int,
             fold_seed: int) -> None:
    """Train ``recipe`` on the pool less fold ``fold`` (its own inner validation split) and write
    the held-out reports' predictions for every text mode and head, then ``fold.json``."""
    from core.data.reports import split_reports
    from core.evaluation.eval_files import eval_pairs
    from core.evaluation.split_eval import predict_reports, write_predictions_csv
    from core.model.description import ModelDescription, Preprocessing
    from core.training.trainer import Trainer
    fold_dir = layout.fold_dir(fold)
    fold_dir.mkdir(parents=True, exist_ok=True)
    held = set(held_out)
    rest = [r for r in reports if r.uid in set(pool) - held]
    inner = split_reports(rest, seed=fold_seed + 101 * (fold + 1), fractions=(1 - INNER_VAL, INNER_VAL, 0.0))
    split = {"train": inner["train"], "val": inner["val"], "test": sorted(held, key=lambda u: (len(u), u))}
    (fold_dir / SPLIT).write_text(json.dumps(split) + "\n")
    cfg = replace(recipe, out=str(fold_dir), run_dir=str(fold_dir), fit_ood=False, split_file=str(fold_dir / SPLIT))
    t0 = time.time()
    trainer = Trainer(cfg)
    trainer.fit()
    data = trainer.data
    held_reports = [r for r in data.reports if r.uid in held]
    meta = ModelDescription(preprocessing=Preprocessing(image_size=cfg.image_size, mean=data.mean, std=data.std),
                            text_max_len=cfg.text_max_len)
    probs = {}
    for mode, head in eval_pairs():
        if mode not in probs:
            probs[mode] = predict_reports(trainer.model, trainer.tokenizer, meta, held_reports, Path(cfg.data), mode,
                                          bank=data.bank)
        write_predictions_csv(oof_path(fold_dir, oof_key(mode, head)), held_reports, probs[mode][head])
    if data.lateral_rows:  # the image head over both views: frontal and lateral averaged
        from core.evaluation.split_eval import predict_views
        write_predictions_csv(oof_path(fold_dir, VIEWS), held_reports,
                              predict_views(trainer.model, meta, held_reports, data.bank, data.lateral_rows))
    (fold_dir / DONE).write_text(json.dumps({
        "fold": fold, "n_train": len(split["train"]), "n_val": len(split["val"]), "n_held_out": len(held),
        "seconds": time.time() - t0, "timings": {k: v for k, v in trainer.timings.items()
                                                 if not isinstance(v, list)}}, indent=2) + "\n")
    trainer.checkpoint.path.unlink(missing_ok=True)  # 150 MB a fold; the OOF files are the result
