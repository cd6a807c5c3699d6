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

from scripts._cli import Parser, fail, read_weights_description, run_main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CV = "eval/cv/img15-3fold"   # under --weights
RESULTS = "recalibration.json"       # under <weights>/eval
INPUTS = "recalibration_inputs"      # under <weights>/eval: the raw (unmapped) val/test predictions
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
                        f"(no model run), else computed and written there (default: WEIGHTS/eval/{INPUTS})")
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


def fitting_data(inputs: dict, splits: list[str]):
    """({mode: {head: P}}, Y) of the named splits stacked (rows in split order)."""
    import numpy as np
    probs: dict = {}
    Y = None
    for mode, head in inputs[splits[0]]:
        P = np.concatenate([inputs[s][(mode, head)][1] for s in splits])
        probs.setdefault(mode, {})[head] = P
        Y = np.concatenate([inputs[s][(mode, head)][2] for s in splits])
    return probs, Y


# -- measurement ---------------------------------------------------------------------------------
def cv_folds(cv_root: Path, key: str):
    from core.evaluation.cross_validation import read_predictions_csv
    from core.evaluation.recalibration import FoldPredictions
    paths = sorted(cv_root.glob(f"fold*/oof_{key}.csv"))
    return [FoldPredictions(*read_predictions_csv(p)) for p in paths]


def measure_cv(cv_root: Path, findings, *, inner: int, min_positives: int, n_boot: int) -> dict:
    """scheme -> 'mode/head' -> finding -> before/after (core.evaluation.recalibration.before_after)."""
    from core.evaluation.recalibration import before_after, cross_fitted, pooled_before_after
    out = {"root": str(cv_root), "folds": sorted(p.name for p in cv_root.glob("fold*") if p.is_dir()),
           "within": {}, "across": {}, "pooled": {"within": {}, "across": {}}}
    for mode, head in _pairs():
        folds = cv_folds(cv_root, f"{mode}_{head}")
        if len(folds) < 2:
            continue
        for scheme in ("within", "across"):
            cf = cross_fitted(folds, findings, scheme=scheme, inner=inner, min_positives=min_positives)
            res = before_after(cf["P"], cf["Q"], cf["Y"], findings, cf["calibrated"], n_boot=n_boot)
            out[scheme][f"{mode}/{head}"] = res
            out["pooled"][scheme][f"{mode}/{head}"] = pooled_before_after(cf["P"], cf["Q"], cf["Y"], findings,
                                                                          cf["calibrated"])
    out["n_reports"] = {k: v[findings[0]]["before"]["n"] for k, v in out["within"].items()}
    return out


def measure_test(inputs: dict, maps: dict, findings, *, n_boot: int) -> tuple[dict, dict]:
    """('mode/head' -> finding -> before/after, 'mode/head' -> pooled top bin before/after) on test."""
    from core.evaluation.recalibration import apply_maps, before_after, pooled_before_after
    out, pooled = {}, {}
    recal = {"maps": maps}
    for (mode, head), (_, P, Y) in inputs["test"].items():
        Q = apply_maps(recal, mode, head, P, findings)
        calibrated = {f: "a" in maps[mode][head][f] for f in findings}
        out[f"{mode}/{head}"] = before_after(P, Q, Y, findings, calibrated, n_boot=n_boot)
        pooled[f"{mode}/{head}"] = pooled_before_after(P, Q, Y, findings, calibrated)
    return out, pooled


def measure_crossfit(inputs: dict, splits: list[str], findings, *, parts: int, min_positives: int,
                     n_boot: int) -> tuple[dict, dict]:
    """As measure_test, on the fitting reports themselves, each scored by a map fitted on the other
    ``parts - 1`` parts of them (the shipped model's own predictions; no report scores its own map)."""
    import numpy as np

    from core.evaluation.recalibration import FoldPredictions, before_after, cross_fitted, pooled_before_after
    out, pooled = {}, {}
    for mode, head in inputs[splits[0]]:
        fold = FoldPredictions([u for s in splits for u in inputs[s][(mode, head)][0]],
                               np.concatenate([inputs[s][(mode, head)][1] for s in splits]),
                               np.concatenate([inputs[s][(mode, head)][2] for s in splits]))
        cf = cross_fitted([fold], findings, scheme="within", inner=parts, min_positives=min_positives)
        out[f"{mode}/{head}"] = before_after(cf["P"], cf["Q"], cf["Y"], findings, cf["calibrated"], n_boot=n_boot)
        pooled[f"{mode}/{head}"] = pooled_before_after(cf["P"], cf["Q"], cf["Y"], findings, cf["calibrated"])
    return out, pooled


def gate(maps: dict, cv: dict, shipped: dict | None = None) -> list[str]:
    """Maps the within-model cross-validation does not confirm (see the module docstring)."""
    import math
    bad = []
    for mode, heads in maps.items():
        for head, per in heads.items():
            cvres = cv["within"].get(f"{mode}/{head}")
            for f, m in per.items():
                if "a" not in m:
                    continue
                if cvres is None:
                    bad.append(f"{mode}/{head}/{f}: no cross-validation predictions to confirm it")
                    continue
                r = cvres[f]
                own = (shipped or {}).get(f"{mode}/{head}", {}).get(f, {})
                if not r["calibrated"] and own.get("calibrated"):
                    # the recipe's folds have too few positives to fit it; the shipped model's own
                    # cross-fitting (the predictions the map is fitted on) is what confirms it
                    r = own
                if not r["calibrated"]:
                    bad.append(f"{mode}/{head}/{f}: cross-validation cannot calibrate it in every model "
                               "(too few positives, or a score that does not rank it)")
                    continue
                s0, s1 = r["before"]["slope"], r["after"]["slope"]
                if not (math.isfinite(s0) and math.isfinite(s1) and s0 > 0 and s1 > 0):
                    bad.append(f"{mode}/{head}/{f}: no finite calibration slope in cross-validation")
                elif abs(math.log(s1)) > abs(math.log(s0)) + 1e-9:
                    bad.append(f"{mode}/{head}/{f}: cross-validated slope {s0:.2f} -> {s1:.2f}, farther from 1")
    return bad


def targets(cv: dict, test: dict, pooled: dict | None = None) -> dict:
    """The issue's targets per task: slope 0.8-1.25 (Cardiomegaly, Atelectasis) and the top bin within
    25% (Edema, Cardiomegaly, Atelectasis; per finding, and pooled over those a number is shown for), on
    the within-model cross-validation and on test."""
    from core.evaluation.recalibration import TASKS
    out = {}
    for source, block in (("cv_within", cv["within"]), ("cv_across", cv["across"]), ("test", test)):
        out[source] = {}
        for task, (mode, head) in TASKS.items():
            res = block.get(f"{mode}/{head}")
            if res is None:
                continue
            row = {}
            for f in ("Edema", "Cardiomegaly", "Atelectasis"):
                if f not in res:
                    continue
                r = res[f]
                t = r["targets"] or {}
                row[f] = {"calibrated": r["calibrated"],
                          "slope_in_band": t.get("slope_in_band") if f != "Edema" else None,
                          "top_bin_within": t.get("top_bin_within"),
                          "top_bin_n": (r["after"] or r["before"])["top_bin"]["n"]}
            tb = ((pooled or {}).get(source, {}).get(f"{mode}/{head}") or {}).get("after")
            if tb is not None:
                row["pooled"] = {"findings": tb["findings"], "top_bin_within": tb["within_tolerance"],
                                 "top_bin_n": tb["n"]}
            out[source][task] = row
    return out


def _fmt(m: dict | None) -> str:
    if m is None:
        return "cannot be calibrated"
    ci = m["slope_ci"]
    tb = m["top_bin"]
    top = (f"top n={tb['n']} mean {tb['mean_predicted']:.2f} obs {tb['observed']:.2f} "
           f"[{tb['observed_ci'][0]:.2f}, {tb['observed_ci'][1]:.2f}]") if tb["n"] else "top n=0"
    slope = f"{m['slope']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    return f"slope {slope} int {m['intercept']:.2f}; {top}"


def print_tables(results: dict) -> None:
    from core.evaluation.recalibration import TASKS
    for source, block in (("cross-validation, within-model", results["cv"]["within"]),
                          ("cross-validation, across models", results["cv"]["across"]),
                          (results["test_label"], results["test"])):
        for task, (mode, head) in TASKS.items():
            res = block.get(f"{mode}/{head}")
            if res is None:
                continue
            print(f"\n{source} — {task} ({mode}/{head})")
            for f, r in res.items():
                print(f"  {f:<14} positives {r['before']['positives']:>4}/{r['before']['n']:<5} "
                      f"before: {_fmt(r['before'])}")
                print(f"  {'':<14} {'':>16} after:  {_fmt(r['after'])}")


def _md_cell(m: dict | None, what: str) -> str:
    if m is None:
        return "cannot be calibrated" if what == "slope" else "—"
    if what == "slope":
        ci = m["slope_ci"]
        return f"{m['slope']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    tb = m["top_bin"]
    if not tb["n"]:
        return f"none ≥ {tb['cut']:.1f}"
    lo, hi = tb["observed_ci"]
    return f"{tb['n']}: {tb['mean_predicted']:.2f} vs {tb['observed']:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown_tables(results: dict) -> str:
    """The before/after tables of docs/calibration.md."""
    from core.evaluation.recalibration import TASKS
    out = []
    for source, block in (("Cross-validation, within-model (the recipe)", results["cv"]["within"]),
                          (results["test_label"].capitalize(), results["test"]),
                          ("Cross-validation, across models (one map, other training runs)", results["cv"]["across"])):
        for task, (mode, head) in TASKS.items():
            res = block.get(f"{mode}/{head}")
            if res is None:
                continue
            out += [f"**{source} — {task}** (`{mode}` / `{head}`)", "",
                    "| Finding | positives / reports | slope before | slope after | intercept before → after | "
                    "top bin before (n: mean predicted vs observed [95% CI]) | top bin after |",
                    "|---|---|---|---|---|---|---|"]
            for f, r in res.items():
                b, a = r["before"], r["after"]
                inter = f"{b['intercept']:.2f} → " + (f"{a['intercept']:.2f}" if a else "—")
                out.append(f"| {f} | {b['positives']} / {b['n']} | {_md_cell(b, 'slope')} | {_md_cell(a, 'slope')} | "
                           f"{inter} | {_md_cell(b, 'top')} | {_md_cell(a, 'top')} |")
            out.append("")
    pooled = results.get("pooled_top_bin") or {}
    out += ["**Pooled top bin** — every prediction ≥ 0.3 of Edema, Cardiomegaly and Atelectasis a user reads a "
            "number for (after: the calibrated ones; n: mean predicted vs observed [95% CI])", "",
            "| source | task | before | after (findings shown) | within 25% |", "|---|---|---|---|---|"]
    for source, name in (("cv_within", "cross-validation, within-model"), ("test", results["test_label"]),
                         ("cv_across", "cross-validation, across models")):
        for task, (mode, head) in TASKS.items():
            r = (pooled.get(source) or {}).get(f"{mode}/{head}")
            if r is None:
                continue
            b, a = r["before"], r["after"]
            within = {True: "**met**", False: "not met", None: "no prediction ≥ 0.3"}[a["within_tolerance"]]
            out.append(f"| {name} | {task} | {_md_top(b)} | {_md_top(a)} ({', '.join(a['findings'])}) | {within} |")
    out.append("")
    return "\n".join(out)


def _md_top(tb: dict) -> str:
    if not tb["n"]:
        return f"none ≥ {tb['cut']:.1f}"
    lo, hi = tb["observed_ci"]
    return f"{tb['n']}: {tb['mean_predicted']:.2f} vs {tb['observed']:.2f} [{lo:.2f}, {hi:.2f}]"


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.evaluation.recalibration import MIN_POSITIVES, fit_maps
    weights = Path(args.weights)
    desc = read_weights_description(weights)
    if not desc.split or not desc.split.get("val") or not desc.split.get("test"):
        fail(f"{weights} keeps no validation and test split; recalibration needs both")
    cv_root = Path(args.cv) if args.cv else weights / DEFAULT_CV
    if not any(cv_root.glob("fold*/oof_*.csv")):
        fail(f"no cross-validation predictions under {cv_root}: the gate needs them (scripts/cv.py writes them)")
    min_pos = args.min_positives or MIN_POSITIVES
    findings = list(desc.findings)
    inputs_dir = Path(args.predictions) if args.predictions else weights / "eval" / INPUTS
    inputs = read_inputs(inputs_dir, findings)
    if inputs is None:
        inputs = compute_inputs(weights, Path(args.data), args.dataset, desc, inputs_dir, write=not args.dry_run)

    import numpy as np
    splits = args.fit_on.split("+")
    probs, Yv = fitting_data(inputs, splits)
    maps = fit_maps(probs, Yv, findings, min_positives=min_pos)
    t0 = time.time()
    cv = measure_cv(cv_root, findings, inner=args.inner, min_positives=min_pos, n_boot=args.bootstrap)
    if "test" in splits:  # the maps saw test: measure by cross-fitting over what they were fitted on
        test, test_pooled = measure_crossfit(inputs, splits, findings, parts=SHIPPED_PARTS,
                                             min_positives=min_pos, n_boot=args.bootstrap)
    else:
        test, test_pooled = measure_test(inputs, maps, findings, n_boot=args.bootstrap)
    unconfirmed = gate(maps, cv, test if "test" in splits else None)
    results = {
        "model": desc.version, "method": "platt", "formula": "p' = sigmoid(a * logit(p) + b)",
        "fitted_on": {"split": args.fit_on, "n_reports": int(len(Yv)),
                      "positives": {f: int(Yv[:, k].sum()) for k, f in enumerate(findings)}},
        "min_positives": min_pos, "inner": args.inner, "bootstrap": args.bootstrap,
        "maps": maps, "unconfirmed": unconfirmed, "cv": cv, "test": test,
        "test_label": (f"the shipped model's {args.fit_on} ({SHIPPED_PARTS}-part cross-fit: no report scored by a "
                       "map that saw it)" if "test" in splits else "test split (shipped map)"),
        "pooled_top_bin": {"cv_within": cv["pooled"]["within"], "cv_across": cv["pooled"]["across"],
                           "test": test_pooled},
        "targets": targets(cv, test, {"cv_within": cv["pooled"]["within"], "cv_across": cv["pooled"]["across"],
                                      "test": test_pooled}),
        "command": " ".join(["python scripts/recalibrate.py",
                             *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - t0, 1),
    }
    print_tables(results)
    for line in unconfirmed:
        print(f"not confirmed: {line}")
    json_out = Path(args.json_out) if args.json_out else (None if args.dry_run else weights / "eval" / RESULTS)
    if unconfirmed and not args.dry_run and not args.drop_unconfirmed:
        if json_out:
            _write_json(json_out, results)
        fail(f"{len(unconfirmed)} map(s) are not confirmed by cross-validation ({unconfirmed[0]}); nothing written "
             "(--drop-unconfirmed writes the weights without them)")
    if args.drop_unconfirmed:
        for line in unconfirmed:
            mode, head, f = line.split(":")[0].split("/")
            maps[mode][head][f] = {"calibrated": False, "positives": maps[mode][head][f]["positives"],
                                   "n": maps[mode][head][f]["n"], "reason": "not confirmed by cross-validation"}
    if json_out:
        _write_json(json_out, results)
    if args.markdown:
        Path(args.markdown).write_text(markdown_tables(results) + "\n")
        print(f"wrote {args.markdown}")
    if args.dry_run:
        print("\ndry run: no weights written")
        return 0
    write_weights(weights, desc, maps, results, inputs, findings, np)
    return 0


def _write_json(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")


def write_weights(weights: Path, desc, maps: dict, results: dict, inputs: dict, findings, np) -> None:
    """The weights with the maps, thresholds and report-QA points through them, and the test
    evaluation files through the map (what evaluate.py now gives)."""
    from core.evaluation import recalibration as R
    from core.evaluation.refit import rescore_thresholds
    from core.model.checkpoint import load_weights, save_weights
    model, _, _, ood = load_weights(weights)
    previous = desc.recalibration or {}
    base_thresholds = previous.get("thresholds_before") or desc.thresholds
    base_points = previous.get("discordance_points_before") or (desc.discordance or {}).get("points")
    block = {"method": "platt", "formula": results["formula"], "fitted_on": results["fitted_on"],
             "min_positives": results["min_positives"], "maps": maps,
             "thresholds_before": base_thresholds, "discordance_points_before": base_points,
             "cv": {"root": results["cv"]["root"], "scheme": "within", "inner": results["inner"]},
             "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "script": "scripts/recalibrate.py"}
    discordance = dict(desc.discordance, points=base_points) if desc.discordance else None
    base_version = (desc.version or "unknown").split("+recal")[0]
    new = desc.updated(recalibration=block, thresholds=R.map_thresholds(base_thresholds, block),
                       discordance=R.map_discordance(discordance, block),
                       version=f"{base_version}+recal{time.strftime('%Y%m%d')}",
                       refits=[*(desc.refits or []), {"at": block["at"], "script": "scripts/recalibrate.py",
                                                      "what": "per-finding Platt maps; thresholds and report-QA "
                                                              "points through them"}])
    save_weights(model, new, weights, ood=ood)
    eval_dir = weights / "eval"
    from core.evaluation.metrics import ece
    for (mode, head), (uids, P, Y) in inputs["test"].items():
        csv_path = eval_dir / f"test_{mode}_{head}.csv"
        if not csv_path.is_file():
            continue
        Q = R.apply_maps(block, mode, head, P, findings)
        _rewrite_csv(csv_path, uids, Q, findings)
        json_path = csv_path.with_suffix(".json")
        if json_path.is_file():
            res = json.loads(json_path.read_text())
            res["ece"] = {f: ece(Y[:, k], Q[:, k]) for k, f in enumerate(findings)}
            res["mean_ece"] = float(np.mean(list(res["ece"].values())))
            res["recalibrated"] = {f: "a" in maps[mode][head][f] for f in findings}
            json_path.write_text(json.dumps(res, indent=2) + "\n")
    rescore_thresholds(eval_dir, new)
    print(f"wrote {weights} ({new.version}): maps for "
          + ", ".join(f"{m}/{h}/{f}" for m, hs in maps.items() for h, per in hs.items() for f, e in per.items()
                      if "a" in e))


def _rewrite_csv(path: Path, uids, Q, findings) -> None:
    """The per-study CSV with its probability columns replaced (rows matched by uid)."""
    import csv
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
        columns = list(rows[0].keys()) if rows else []
    at = {u: i for i, u in enumerate(uids)}
    if {r["uid"] for r in rows} != set(at):
        fail(f"{path} holds other reports than the test split; re-run scripts/evaluate.py")
    for r in rows:
        for k, f in enumerate(findings):
            r[f] = f"{Q[at[r['uid']], k]:.6f}"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    run_main(main)
