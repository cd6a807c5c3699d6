"""Evaluate weights on a split of IU X-ray or another dataset: metrics JSON (+ per-study CSV).

    python scripts/evaluate.py --weights weights --data ../shared/iu-xray --split test \
        --text-mode report --head fusion --json out.json [--predictions out.csv]
    python scripts/evaluate.py --weights w_mimic --data ../shared/iu-xray --split all \
        --text-mode indication --head fusion --json ext.json        # external validation on IU

``--dataset`` (openi, mimic-cxr, chexpert, csv) says what ``--data`` is. Refused (one line,
exit 2): a dataset the image encoder's *pretraining* saw (the weights' metadata lists them,
e.g. torchxrayvision's ``all`` weights include Open-I) — which of its images were seen is
unknown, so no split of it is held out; and train/val/test of a dataset the weights were
not trained on (their split belongs to another dataset: use ``--split all``).

One prediction per report: the mean of the calibrated probabilities of its frontal
images. ``--split all`` scores every report in DATA that has a frontal image. The JSON
holds n_studies, auc and auc_ci (95% bootstrap) per finding, macro_auc, macro_auc_ci,
auprc, ece, the thresholds used, and the keyword baseline on the same reports.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.data.labels import Head, TextMode
from scripts._cli import Parser, fail, run_main


def parse_args(argv=None):
    from core.data.labels import DEFAULT_TEXT_MODE, HEADS, TEXT_MODES
    from core.data.sources import DATASETS
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="the weights folder")
    p.add_argument("--data", required=True, help="the data folder")
    p.add_argument("--dataset", default="openi", choices=list(DATASETS), help="layout of --data (core.data.sources)")
    p.add_argument("--split", choices=["train", "val", "test", "all"], default="test",
                   help="the weights' split to score (all: every study, for another dataset)")
    p.add_argument("--text-mode", choices=list(TEXT_MODES), default=DEFAULT_TEXT_MODE,
                   help="what the text branch reads: the indication, the report (reads the labels' source) or none")
    p.add_argument("--head", choices=list(HEADS), default="fusion", help="which head's probabilities are scored")
    p.add_argument("--json", required=True, dest="json_out", metavar="OUT", help="write the metrics JSON here")
    p.add_argument("--predictions", metavar="OUT.csv", help="also write one row of probabilities per study here")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    return p.parse_args(argv)


def check_unseen(desc, dataset: str, split: str) -> str:
    """The dataset the weights were trained on; refuses data the image encoder's pretraining
    saw, and a named split of a dataset the weights were not trained on."""
    trained_on = (desc.trained_on or {}).get("dataset", "openi")  # weights from before core.data.sources: IU
    pretraining = (desc.backbones or {}).get("image_pretraining", {}) or {}
    if dataset in (pretraining.get("datasets") or []):
        fail(f"the image encoder was pretrained on {dataset} ({pretraining.get('kind')} weights "
             f"{pretraining.get('file', '')}); scoring it there is not a validation: use a dataset it has not seen")
    if dataset != trained_on and split != "all":
        fail(f"these weights were trained on {trained_on}; their {split} split does not apply to {dataset}: "
             "use --split all for an external validation")
    return trained_on


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from core.data.reports import DataLayoutError
    from core.evaluation.split_eval import (
        REPORT_MODE_CAVEAT,
        keyword_baseline_json,
        metrics_json,
        predict_reports,
        select_reports,
        weights_collection,
        write_predictions_csv,
    )
    from core.model.checkpoint import WeightsError, load_weights
    from core.model.description import describe
    if args.head == Head.TEXT and args.text_mode == TextMode.NONE:
        fail("the text head has nothing to read with --text-mode none; use --head image or fusion")
    try:
        model, tokenizer, metadata, _ = load_weights(Path(args.weights))
        desc = describe(metadata)
        trained_on = check_unseen(desc, args.dataset, args.split)
        coll = weights_collection(desc, Path(args.data), args.dataset)
        if args.text_mode != TextMode.NONE and not coll.has_text:
            fail(f"{coll.title} has no report text; use --text-mode none")
        reports = select_reports(coll.reports, args.split, desc.split)
    except (WeightsError, DataLayoutError, ValueError) as exc:
        fail(str(exc))
    if not reports:
        fail(f"no report of the {args.split} split has a frontal image in {args.data}")
    probs = predict_reports(model, tokenizer, desc, reports, Path(args.data), args.text_mode,
                            paths=coll.image_paths)[args.head]
    Y = np.array([r.labels for r in reports], dtype=float)
    result = metrics_json(Y, probs, thresholds=desc.thresholds_for(args.text_mode, args.head),
                          n_boot=args.bootstrap, findings=desc.findings)
    result.update(split=args.split, text_mode=args.text_mode, head=args.head, model=desc.version,
                  combine="mean of calibrated probabilities over a report's frontal images",
                  keyword_baseline=keyword_baseline_json(reports, n_boot=args.bootstrap),
                  trained_on=trained_on, validated_on=args.dataset, external=args.dataset != trained_on)
    if args.text_mode == TextMode.REPORT and args.head != Head.IMAGE:
        result["caveat"] = REPORT_MODE_CAVEAT
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.predictions:
        write_predictions_csv(Path(args.predictions), reports, probs, desc.findings)
    ci = result["macro_auc_ci"]
    print(f"{args.split}/{args.text_mode}/{args.head}: {result['n_studies']} studies, macro AUC "
          f"{result['macro_auc']:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]; keyword baseline "
          f"{result['keyword_baseline']['macro_auc']:.4f}")
    return 0


if __name__ == "__main__":
    run_main(main)
