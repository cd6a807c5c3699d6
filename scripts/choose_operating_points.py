"""Choose the operating point of every flag and state what it means (core.evaluation.operating_targets).

    python scripts/choose_operating_points.py                 # write them into weights/
    python scripts/choose_operating_points.py --dry-run --json OUT.json

Reads what is already on disk, runs no model: the shipped model's raw validation and test predictions
(``<weights>/eval/recalibration_inputs``, mapped through the weights' recalibration) and the recipe's
cross-validated out-of-fold predictions (``<weights>/eval/cv/img15-3fold``). For each text mode
(the fused head; image only: the image head) and each finding assessed in that mode (every finding
with the report; otherwise those reliable from the image) and each target of
``operating_targets.TARGETS``: the shipped threshold, the stated sensitivity and specificity with
CIs and PPV, and the test-split check. Prints how often studies with none of the five findings
carry a flag at the default, and writes the block into the weights (atomic; new version).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from core.data.labels import Head, TextMode
from scripts._cli import Parser, fail, read_weights_description, run_main

DEFAULT_CV = "eval/cv/img15-3fold"
INPUTS = "eval/recalibration_inputs"


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(Path(__file__).resolve().parents[1] / "weights"))
    p.add_argument("--cv", default=None, help=f"the recipe's cross-validation folder (default WEIGHTS/{DEFAULT_CV})")
    p.add_argument("--data", default=None,
                   help="the IU X-ray folder: also measure report QA on the test reports that rule a finding out")
    p.add_argument("--inner", type=int, default=2, help="parts each model's held-out reports are cross-fitted in")
    p.add_argument("--json", dest="json_out", default=None, help="also write the block and the flag rates here")
    p.add_argument("--dry-run", action="store_true", help="measure and print; write no weights")
    return p.parse_args(argv)


def _read(path: Path, findings):
    from core.evaluation.cross_validation import read_predictions_csv
    if not path.is_file():
        fail(f"missing {path}: run scripts/recalibrate.py (the raw predictions) or scripts/cv.py first")
    return read_predictions_csv(path)


def normal_flag_rate(Y, flags) -> dict:
    """Share of studies with none of the findings (rows of ``Y`` all 0) that carry a flag, with its Wilson CI."""
    from core.evaluation.metrics import wilson_ci
    normal = Y.sum(axis=1) == 0
    k, n = int(flags[normal].sum()), int(normal.sum())
    return {"rate": round(k / n, 4) if n else None, "ci": wilson_ci(k, n), "flagged": k, "n": n}


def flags_at(P, thresholds: dict, findings):
    """Whether each study carries at least one flag at these per-finding thresholds."""
    import numpy as np
    out = np.zeros(len(P), bool)
    for f, t in thresholds.items():
        out |= P[:, findings.index(f)] >= t
    return out


def cross_fitted_normal_rate(models, assessed, findings, target: str, *, inner: int) -> dict:
    """normal_flag_rate over models' held-out (Y, P), each half flagged at its model's thresholds from
    the other half (as the stated sensitivity and specificity are measured)."""
    import numpy as np

    from core.evaluation import operating_targets as T
    ys, flags = [], []
    for i, (Y, P) in enumerate(models):
        part = T.stratified_parts((Y.sum(axis=1) > 0).astype(int), inner, i)
        thr = np.zeros((len(Y), len(findings)))
        for s in range(inner):
            fit, held = part != s, part == s
            for f in assessed:
                k = findings.index(f)
                thr[held, k] = T.threshold_for(Y[fit, k], P[fit, k], *T.split_name(target))
        flag = np.zeros(len(Y), bool)
        for f in assessed:
            k = findings.index(f)
            flag |= P[:, k] >= thr[:, k]
        ys.append(Y)
        flags.append(flag)
    Y, flag = np.concatenate(ys), np.concatenate(flags)
    return normal_flag_rate(Y, flag)


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from core.evaluation import operating_targets as T
    from core.evaluation.operating_targets import MODE_HEAD
    from core.evaluation.recalibration import apply_maps
    weights = Path(args.weights)
    desc = read_weights_description(weights)
    findings = list(desc.findings)
    cv_root = Path(args.cv) if args.cv else weights / DEFAULT_CV
    fold_dirs = sorted(d for d in cv_root.glob("fold[0-9]*") if d.is_dir())
    if not fold_dirs:
        fail(f"no cross-validation folds under {cv_root} (scripts/cv.py writes them)")
    reliable = desc.image_reliable
    points: dict = {}
    rates: dict = {}
    for mode, head in MODE_HEAD.items():
        val = _read(weights / INPUTS / f"val_{mode}_{head}.csv", findings)
        test = _read(weights / INPUTS / f"test_{mode}_{head}.csv", findings)
        Pv, Pt = (apply_maps(desc.recalibration, mode, head, P, findings) for P in (val[1], test[1]))
        Yv, Yt = val[2], test[2]
        folds = [_read(d / f"oof_{mode}_{head}.csv", findings) for d in fold_dirs]
        cv_y = np.concatenate([f[2] for f in folds])
        prevalence = np.concatenate([cv_y, Yt]).mean(axis=0)  # the whole collection: train+val (CV) and test
        n_cv = len(cv_y)
        assessed = T.assessed_findings(mode, findings, reliable)
        shipped_y, shipped_p = np.concatenate([Yv, Yt]), np.concatenate([Pv, Pt])
        shipped_source = f"the shipped model's validation + test reports ({len(shipped_y)})"
        # the recipe's folds never fine-tune the text encoder: with the report they describe another
        # reader than the shipped one, so report mode states the shipped model's own cross-fitted numbers
        stated = None if mode == TextMode.REPORT else [(fy, fp) for _, fp, fy in folds]
        stated_source = (f"cross-validation: {n_cv} reports held out from {len(folds)} models, each flagged at its "
                         "model's threshold from its other reports") if stated else \
            f"{shipped_source}, each half flagged at the threshold from the other half"
        points[mode] = {}
        for f in assessed:
            k = findings.index(f)
            points[mode][f] = T.choose(
                shipped=(shipped_y[:, k], shipped_p[:, k]),
                stated_folds=[(fy[:, k], fp[:, k]) for fy, fp in stated] if stated else None,
                check=((Yv[:, k], Pv[:, k]), (Yt[:, k], Pt[:, k])), prevalence=float(prevalence[k]),
                shipped_source=shipped_source, stated_source=stated_source, inner=args.inner)
        default = T.default_name(mode)
        rates[mode] = {
            "stated": cross_fitted_normal_rate(stated or [(shipped_y, shipped_p)], assessed, findings, default,
                                               inner=args.inner),
            "test": normal_flag_rate(Yt, flags_at(Pt, {f: points[mode][f][default]["test"]["threshold"]
                                                       for f in assessed}, findings))}
    block = {"rule": T.RULE, "default": {m: T.default_name(m) for m in T.MODE_HEAD}, "choices": list(T.NAMES),
             "head": T.MODE_HEAD,
             # the labels are the same in every mode: the last mode's collection prevalence is every mode's
             "prevalence": {f: round(float(v), 4) for f, v in zip(findings, prevalence, strict=True)},
             "points": points, "normal_flag_rate": rates,
             "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "script": "scripts/choose_operating_points.py"}
    # report QA reads "the report says it" from the text head: at the report's default target too, so a
    # report that rules a finding out is not read as saying it; its discordance points refitted to match
    text_thr, qa = report_qa_points(weights, desc, findings)
    block["report_qa"] = {"text_thresholds": text_thr, "rule": f"text head at {T.default_name('report')} on "
                          "validation; discordance points refitted on validation (core.evaluation.operating_points)",
                          "val_flag_rate": qa["val_flag_rate"]}
    if args.data:
        block["negations"] = negation_flags(Path(args.data), weights, desc, points["report"])
        block["negations_text_head"] = negation_flags(Path(args.data), weights, desc, None, text_thresholds=text_thr)
    _print(block, findings)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(block, indent=1) + "\n")
        print(f"wrote {args.json_out}")
    if args.dry_run:
        print("dry run: no weights written")
        return 0
    from core.model.checkpoint import load_weights, save_weights
    model, _, _, ood = load_weights(weights)
    thresholds = {m: {h: dict(v) for h, v in hs.items()} for m, hs in desc.thresholds.items()}
    thresholds["report"]["text"] = dict(text_thr)
    new = desc.refitted("ops", stamp="%Y%m%d%H%M", when=block["at"], script=block["script"],
                        what="operating points by target specificity / sensitivity", operating_points=block,
                        thresholds=thresholds,
                        discordance=dict(desc.discordance.to_dict() if desc.discordance else {}, **qa))
    save_weights(model, new, weights, ood=ood)
    (weights / "eval" / "operating_points.json").write_text(json.dumps(block, indent=1) + "\n")
    print(f"wrote {weights} ({new.version}) and {weights / 'eval' / 'operating_points.json'}")
    return 0


def report_qa_points(weights: Path, desc, findings) -> tuple[dict, dict]:
    """(finding -> the text head's report-mode threshold at the report's default target, on validation;
    the discordance block refitted with it), from the raw validation predictions through the maps."""
    import numpy as np

    from core.evaluation import operating_targets as T
    from core.evaluation.operating_points import fit_discordance
    from core.evaluation.recalibration import apply_maps
    probs = {}
    for head in (Head.IMAGE, Head.TEXT):
        _, P, Y = _read(weights / INPUTS / f"val_report_{head}.csv", findings)
        probs[head] = apply_maps(desc.recalibration, "report", head, P, findings)
    kind, value = T.split_name(T.default_name("report"))
    text_thr = {f: T.threshold_for(Y[:, k], probs["text"][:, k], kind, value) for k, f in enumerate(findings)}
    supported = [f for f, ok in desc.image_reliable.items() if ok]
    block = fit_discordance(probs["image"], probs["text"], Y, np.array([text_thr[f] for f in findings]), findings,
                            supported, budget=desc.discordance.budget if desc.discordance else 0.04)
    block["supported"] = supported
    return text_thr, block


def negation_flags(data: Path, weights: Path, desc, report_points: dict | None, *,
                   text_thresholds: dict | None = None) -> dict:
    """Target name -> finding -> how many test reports that explicitly rule the finding out (and whose
    label agrees) the report-mode decision flags for it (core.evaluation.keyword_baseline.rules_out).
    With ``text_thresholds``: how many the text head reads as saying it (what report QA's "the report
    says it" rests on), under the name "text head"."""
    import numpy as np

    from core.data.sources import load_collection
    from core.evaluation.keyword_baseline import rules_out
    from core.evaluation.metrics import wilson_ci
    from core.evaluation.recalibration import apply_maps
    findings = list(desc.findings)
    head = "text" if text_thresholds else "fusion"
    uids, P, Y = _read(weights / INPUTS / f"test_report_{head}.csv", findings)
    P = apply_maps(desc.recalibration, "report", head, P, findings)
    if text_thresholds:
        report_points = {f: {"text head": {"threshold": t}} for f, t in text_thresholds.items()}
    reports = {r.uid: r for r in load_collection((desc.data or {}).get("dataset", "openi"), data).reports}
    texts = [reports[u].text("report") for u in uids]
    out = {}
    for name in next(iter(report_points.values())):
        per, k_all, n_all = {}, 0, 0
        for k, f in enumerate(findings):
            ruled = np.array([rules_out(t, f) for t in texts]) & (Y[:, k] == 0)
            flagged = int((P[ruled, k] >= report_points[f][name]["threshold"]).sum())
            per[f] = {"flagged": flagged, "n": int(ruled.sum()), "rate": round(flagged / ruled.sum(), 4) if ruled.any()
                      else None}
            k_all, n_all = k_all + flagged, n_all + int(ruled.sum())
        out[name] = {"findings": per, "overall": {"flagged": k_all, "n": n_all, "rate": round(k_all / n_all, 4),
                                                  "ci": wilson_ci(k_all, n_all)}}
    return out


def _print(block: dict, findings) -> None:
    for mode, per in block["points"].items():
        d = block["default"][mode]
        r = block["normal_flag_rate"][mode]
        st, te = r["stated"], r["test"]
        print(f"\n{mode}: studies with none of the five findings flagged at {d}: stated {st['rate']:.1%} "
              f"({st['flagged']}/{st['n']}), test split {te['rate']:.1%} ({te['flagged']}/{te['n']})")
        for f, choices in per.items():
            e = choices[d]
            t = e.get("test") or {}
            print(f"  {f:<14} thr {e['threshold']:.3f}  sens {e['sensitivity']:.2f} {e['sensitivity_ci']} "
                  f"spec {e['specificity']:.3f} {e['specificity_ci']}  PPV {e['ppv']:.2f} at {e['prevalence']:.1%} "
                  f"({e['positives']} pos)  | test: sens {t.get('sensitivity')} spec {t.get('specificity')} "
                  f"({t.get('positives')} pos)")
    for name, r in [*(block.get("negations") or {}).items(), *(block.get("negations_text_head") or {}).items()]:
        print(f"report QA, test reports that rule a finding out, flagged at {name}: {r['overall']['rate']:.1%} "
              f"({r['overall']['flagged']}/{r['overall']['n']}); "
              + ", ".join(f"{f} {c['flagged']}/{c['n']}" for f, c in r["findings"].items()))


if __name__ == "__main__":
    run_main(main)
