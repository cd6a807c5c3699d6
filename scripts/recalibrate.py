"""Recalibrate the shipped weights: a Platt map per text mode, head and finding (issue 20).

    python scripts/recalibrate.py --dry-run                       # measure only, write nothing
    python scripts/recalibrate.py                                 # fit, gate, write the weights
    python scripts/recalibrate.py --dry-run --predictions weights/eval/recalibration_inputs   # no model run

The map p' = sigmoid(a * logit(p) + b) is fitted on the shipped model's *validation* split (the
split its temperatures and thresholds were already fitted on; never the test split); a finding
with fewer than --min-positives positives there gets none and is marked "cannot be calibrated"
(the product then shows no probability for it). Measured, never on what fitted it:

- cross-validation (--cv, the recipe's out-of-fold predictions over train+val, 3 models):
  ``within``: each model's predictions recalibrated by the map fitted on that model's other
  held-out reports (--inner parts), the protocol of the shipped map; ``across``: fold k by the
  map fitted on the other folds (other models);
- the test split (625 reports), once, with the shipped map.

Gate (never on test): every map the weights would carry must be confirmed by the ``within``
cross-validation — there too the finding can be calibrated, and its calibration slope ends no
farther from 1 than it started; otherwise nothing is written (exit 2), unless --drop-unconfirmed
writes the weights without those maps. Thresholds and report-QA operating points move through the
same monotone map, so every decision stays the same. Writes <weights>/model.safetensors and
metadata.json (atomic, digest kept valid), the test evaluation files through the map, the raw
inputs (--predictions) and the results (<weights>/eval/recalibration.json, or --json).
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from core.evaluation.eval_files import RECALIBRATION_INPUTS
from scripts._cli import Parser, fail, read_weights_description, run_main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CV = "eval/cv/img15-3fold"   # under --weights
RESULTS = "recalibration.json"       # under <weights>/eval
FIT_CHOICES = ("val", "val+test")
SHIPPED_PARTS = 5   # cross-fitting the shipped model's val+test: each map fitted on 4/5 (~870 reports)


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_weights_and_data()
    p.add_argument("--cv", default=None,
                   help="folder of the recipe's cross-validation (fold*/oof_<mode>_<head>.csv; "
                        f"default: WEIGHTS/{DEFAULT_CV})")
    p.add_argument("--inner", type=int, default=2,
                   help="within-model cross-fitting: parts each fold's predictions are split into (default 2: "
                        "each map fitted on ~420 reports, like the shipped model's 467 validation reports)")
    p.add_argument("--min-positives", type=int, default=None,
                   help="fewest positives (and negatives) in the fitting data for a map (default: "
                        "core.evaluation.recalibration.MIN_POSITIVES = 20)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the slope CIs (default 1000)")
    p.add_argument("--predictions", default=None,
                   help="folder of the shipped model's raw val_/test_<mode>_<head>.csv: read from it when complete "
                        "(no model run), else computed and written there "
                        f"(default: WEIGHTS/eval/{RECALIBRATION_INPUTS})")
    p.add_argument("--json", dest="json_out", default=None,
                   help=f"write the measurement here (default when writing the weights: WEIGHTS/eval/{RESULTS})")
    p.add_argument("--markdown", default=None, help="also write the before/after tables as Markdown here")
    p.add_argument("--fit-on", choices=FIT_CHOICES, default="val+test",
                   help="the shipped model's held-out reports the maps are fitted on (default val+test: 1,092 "
                        "reports, enough positives to calibrate Edema; the test measurement then uses a map "
                        "fitted on val alone, so it never scores reports its map saw)")
    p.add_argument("--dry-run", action="store_true", help="print the measurement; write no weights or eval files")
    p.add_argument("--drop-unconfirmed", action="store_true",
                   help="write the weights without the maps cross-validation does not confirm (default: refuse)")
    args = p.parse_args(argv)
    if args.inner < 2:
        fail(f"--inner must be at least 2, got {args.inner}")
    if args.bootstrap < 0:
        fail(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    if args.min_positives is not None and args.min_positives < 1:
        fail(f"--min-positives must be positive, got {args.min_positives}")
    return args


# -- the shipped model's raw predictions -------------------------------------------------------
def _pairs():
    from core.evaluation.eval_files import eval_pairs
    return eval_pairs()


def read_inputs(folder: Path, findings) -> dict | None:
    """{split: {(mode, head): (uids, P, Y)}} from a complete inputs folder, else None."""
    from core.evaluation.cross_validation import read_predictions_csv
    out = {}
    for split in ("val", "test"):
        out[split] = {}
        for mode, head in _pairs():
            path = folder / f"{split}_{mode}_{head}.csv"
            if not path.is_file():
                return None
            out[split][(mode, head)] = read_predictions_csv(path)
    return out


def compute_inputs(weights: Path, data: Path, dataset, desc, folder: Path, *, write: bool):
    """Run the model (fp32, CPU) on the validation and test splits with no recalibration."""
    import numpy as np

    from core.data.reports import DataLayoutError
    from core.evaluation.split_eval import predict_reports, select_reports, weights_collection, write_predictions_csv
    from core.model.checkpoint import WeightsError, load_weights
    try:
        model, tokenizer, _, _ = load_weights(weights)
        coll = weights_collection(desc, data, dataset)
    except (WeightsError, DataLayoutError) as exc:
        fail(str(exc))
    raw = desc.updated(recalibration=None)
    out = {}
    for split in ("val", "test"):
        reports = select_reports(coll.reports, split, desc.split)
        if not reports:
            fail(f"no report of the {split} split has a frontal image in {data}")
        Y = np.array([r.labels for r in reports], dtype=float)
        uids = [r.uid for r in reports]
        out[split] = {}
        for mode in desc.text_modes:
            t0 = time.time()
            probs = predict_reports(model, tokenizer, raw, reports, data, mode, paths=coll.image_paths)
            for m, h in _pairs():
                if m == mode:
                    out[split][(m, h)] = (uids, probs[h], Y)
                    if write:
                        write_predictions_csv(folder / f"{split}_{m}_{h}.csv", reports, probs[h],
                                              findings=desc.findings)
            print(f"{split}/{mode}: {len(reports)} reports in {time.time() - t0:.0f}s", flush=True)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.evaluation import recalibration_protocol as P
    from core.evaluation.recalibration import MIN_POSITIVES, fit_maps
    from core.evaluation.recalibration_tables import markdown_tables, print_tables
    from core.model.recalibration_maps import maps_to_dict
    weights = Path(args.weights)
    desc = read_weights_description(weights)
    if not desc.split or not desc.split.get("val") or not desc.split.get("test"):
        fail(f"{weights} keeps no validation and test split; recalibration needs both")
    cv_root = Path(args.cv) if args.cv else weights / DEFAULT_CV
    if not any(cv_root.glob("fold*/oof_*.csv")):
        fail(f"no cross-validation predictions under {cv_root}: the gate needs them (scripts/cv.py writes them)")
    min_pos = args.min_positives or MIN_POSITIVES
    findings = list(desc.findings)
    inputs_dir = Path(args.predictions) if args.predictions else weights / "eval" / RECALIBRATION_INPUTS
    inputs = read_inputs(inputs_dir, findings)
    if inputs is None:
        inputs = compute_inputs(weights, Path(args.data), args.dataset, desc, inputs_dir, write=not args.dry_run)

    splits = args.fit_on.split("+")
    pool = desc.supported  # pooled and judged by the targets: the weights' evidence
    probs, Yv = P.fitting_data(inputs, splits)
    maps = fit_maps(probs, Yv, findings, min_positives=min_pos)
    t0 = time.time()
    cv = P.measure_cv(cv_root, findings, pool, inner=args.inner, min_positives=min_pos, n_boot=args.bootstrap)
    if "test" in splits:  # the maps saw test: measure by cross-fitting over what they were fitted on
        test, test_pooled = P.measure_crossfit(inputs, splits, findings, pool, parts=SHIPPED_PARTS,
                                               min_positives=min_pos, n_boot=args.bootstrap)
    else:
        test, test_pooled = P.measure_test(inputs, maps, findings, pool, n_boot=args.bootstrap)
    unconfirmed = P.gate(maps, cv, test if "test" in splits else None)
    fitted_on = {"split": args.fit_on, "n_reports": int(len(Yv)),
                 "positives": {f: int(Yv[:, k].sum()) for k, f in enumerate(findings)}}
    pooled = {"cv_within": cv["pooled"]["within"], "cv_across": cv["pooled"]["across"], "test": test_pooled}
    results = {
        "model": desc.version, "method": "platt", "formula": P.FORMULA, "fitted_on": fitted_on,
        "min_positives": min_pos, "inner": args.inner, "bootstrap": args.bootstrap,
        "maps": maps_to_dict(maps), "unconfirmed": [str(u) for u in unconfirmed], "supported": pool,
        "cv": cv, "test": test,
        "test_label": (f"the shipped model's {args.fit_on} ({SHIPPED_PARTS}-part cross-fit: no report scored by a "
                       "map that saw it)" if "test" in splits else "test split (shipped map)"),
        "pooled_top_bin": pooled, "targets": P.targets(cv, test, pooled, pool, fitted_on["positives"]),
        "command": " ".join(["python scripts/recalibrate.py",
                             *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - t0, 1),
    }
    print_tables(results)
    for u in unconfirmed:
        print(f"not confirmed: {u}")
    json_out = Path(args.json_out) if args.json_out else (None if args.dry_run else weights / "eval" / RESULTS)
    if unconfirmed and not args.dry_run and not args.drop_unconfirmed:
        if json_out:
            _write_json(json_out, results)
        fail(f"{len(unconfirmed)} map(s) are not confirmed by cross-validation ({unconfirmed[0]}); nothing written "
             "(--drop-unconfirmed writes the weights without them)")
    if args.drop_unconfirmed:
        maps = P.drop_unconfirmed(maps, unconfirmed)
    if json_out:
        _write_json(json_out, results)
    if args.markdown:
        Path(args.markdown).write_text(markdown_tables(results) + "\n")
        print(f"wrote {args.markdown}")
    if args.dry_run:
        print("\ndry run: no weights written")
        return 0
    write_weights(weights, P.recalibrated(desc, maps, results), inputs, findings)
    return 0


def write_weights(weights: Path, new, inputs: dict, findings) -> None:
    """The weights with the new description, and the test evaluation files through the maps."""
    from core.evaluation.eval_files import recalibrate_test_files
    from core.evaluation.refit import rescore_thresholds
    from core.model.checkpoint import load_weights, save_weights
    model, _, _, ood = load_weights(weights)
    save_weights(model, new, weights, ood=ood)
    recalibrate_test_files(weights / "eval", inputs["test"], new.recalibration, findings)
    rescore_thresholds(weights / "eval", new)
    maps = new.recalibration.maps
    print(f"wrote {weights} ({new.version}): maps for "
          + ", ".join(f"{m}/{h}/{f}" for m, hs in maps.items() for h, per in hs.items() for f, e in per.items()
                      if e.calibrated))


def _write_json(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
