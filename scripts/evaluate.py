"""Evaluate shipped weights on a split of IU X-ray: metrics JSON (+ per-study CSV).

    python scripts/evaluate.py --weights weights --data ../shared/iu-xray --split test \
        --text-mode report --head fusion --json out.json [--predictions out.csv]

One prediction per report: the mean of the calibrated probabilities of its frontal
images. ``--split all`` scores every report in DATA that has a frontal image. The JSON
holds n_studies, auc and auc_ci (95% bootstrap) per finding, macro_auc, macro_auc_ci,
auprc, ece, the thresholds used, and the keyword baseline on the same reports.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json  # noqa: E402

from scripts._cli import Parser, fail, run_main  # noqa: E402


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=["train", "val", "test", "all"], default="test")
    p.add_argument("--text-mode", choices=["report", "indication", "none"], default="report")
    p.add_argument("--head", choices=["fusion", "image", "text"], default="fusion")
    p.add_argument("--json", required=True, dest="json_out")
    p.add_argument("--predictions")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    from core.checkpoint import WeightsError, load_weights
    from core.data import DataLayoutError, load_reports
    from core.evaluation import (REPORT_MODE_CAVEAT, keyword_baseline_json, metrics_json, predict_reports,
                                 select_reports, write_predictions_csv)
    if args.head == "text" and args.text_mode == "none":
        fail("the text head has nothing to read with --text-mode none; use --head image or fusion")
    try:
        model, tokenizer, metadata, _ = load_weights(Path(args.weights))
        reports = load_reports(Path(args.data), use_automatic="automatic" in metadata.get("label_source", ""))
        reports = select_reports(reports, args.split, metadata.get("split"))
    except (WeightsError, DataLayoutError, ValueError) as exc:
        fail(str(exc))
    if not reports:
        fail(f"no report of the {args.split} split has a frontal image in {args.data}")
    probs = predict_reports(model, tokenizer, metadata, reports, Path(args.data), args.text_mode)[args.head]
    Y = np.array([r.labels for r in reports], dtype=float)
    result = metrics_json(Y, probs, thresholds=metadata["thresholds"][args.text_mode][args.head],
                          n_boot=args.bootstrap)
    result.update(split=args.split, text_mode=args.text_mode, head=args.head, model=metadata.get("version"),
                  combine="mean of calibrated probabilities over a report's frontal images",
                  keyword_baseline=keyword_baseline_json(reports, n_boot=args.bootstrap))
    if args.text_mode == "report" and args.head != "image":
        result["caveat"] = REPORT_MODE_CAVEAT
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.predictions:
        write_predictions_csv(Path(args.predictions), reports, probs)
    ci = result["macro_auc_ci"]
    print(f"{args.split}/{args.text_mode}/{args.head}: {result['n_studies']} studies, macro AUC "
          f"{result['macro_auc']:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]; keyword baseline "
          f"{result['keyword_baseline']['macro_auc']:.4f}")
    return 0


if __name__ == "__main__":
    run_main(main)
