"""Refit what is chosen after training on existing weights, without retraining the network.

    python scripts/refit_operating_points.py --weights weights --data ../shared/iu-xray \
        [--cv runs/cv/img15-3fold/summary.json]

On the weights' own splits: operating thresholds (core.evaluation.operating_points, on validation), held-out
evidence per finding (core.evaluation.evidence, from ``WEIGHTS/eval/test_*.json`` and the optional
cross-validation summary), report-QA operating points (validation, false-flag budget) and
the out-of-distribution guard with its view stage (fitted on the training split's frontal
and lateral films). The sensitivity and specificity at the new thresholds are written into
the test evaluation files from their per-study CSVs (AUCs do not change). The network's
tensors are untouched; the weights file is rewritten atomically.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from scripts._cli import Parser, fail, run_main


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="weights", help="the weights folder to refit in place")
    p.add_argument("--data", required=True, help="the data folder the weights were trained on")
    p.add_dataset()
    p.add_argument("--cv", help="summary.json written by scripts/cv.py (evidence from cross-validation too)")
    p.add_argument("--keep-guard", action="store_true", help="do not refit the out-of-distribution guard")
    p.add_argument("--guard-only", action="store_true", help="refit only the out-of-distribution guard")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.data.reports import DataLayoutError
    from core.evaluation.refit import fit_guard, refit, rescore_thresholds
    from core.evaluation.split_eval import weights_collection
    from core.model.checkpoint import WeightsError, describe, load_weights, save_weights
    weights = Path(args.weights)
    try:
        model, tokenizer, metadata, ood = load_weights(weights)
        desc = describe(metadata)
        coll = weights_collection(desc, Path(args.data), args.dataset)
    except (WeightsError, DataLayoutError) as exc:
        fail(str(exc))
    cv = None
    if args.cv:
        try:
            cv = json.loads(Path(args.cv).read_text())
        except (OSError, ValueError) as exc:
            fail(f"cannot read the cross-validation summary {args.cv}: {exc}")
    t0 = time.time()
    new = desc if args.guard_only else refit(model, tokenizer, desc, coll.reports, Path(args.data),
                                             weights / "eval", cv_summary=cv, paths=coll.image_paths)
    if not args.keep_guard:
        ood = fit_guard(coll, new.split_uids("train"))
    new = new.refitted("refit", strip="", script="scripts/refit_operating_points.py",
                       what="guard" if args.guard_only else
                       "thresholds, evidence, report-QA operating points" + ("" if args.keep_guard else ", guard"),
                       extra={k: v for k, v in new.extra.items() if k != "refit"})
    save_weights(model, new, weights, ood=ood)
    rescore_thresholds(weights / "eval", new)
    if args.guard_only:
        print(f"refit the guard of {weights} in {time.time() - t0:.0f}s")
        return 0
    ev = new.image_reliable
    print(f"refit {weights} in {time.time() - t0:.0f}s; reliable from the image: "
          f"{', '.join(f for f, ok in ev.items() if ok) or 'none'}; "
          f"not: {', '.join(f for f, ok in ev.items() if not ok)}")
    qa = new.discordance
    print(f"report QA: budget {qa.budget:.0%}, validation flag rate "
          f"{qa.val_flag_rate:.1%}, points {json.dumps(qa.points)}")
    return 0


if __name__ == "__main__":
    run_main(main)
