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
from pathlib import Path

from scripts._cli import Parser, fail, read_weights_description, run_main

DEFAULT_CV = "eval/cv/img15-3fold"


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


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.evaluation import operating_choice as C
    weights = Path(args.weights)
    desc = read_weights_description(weights)
    findings = list(desc.findings)
    cv_root = Path(args.cv) if args.cv else weights / DEFAULT_CV
    fold_dirs = sorted(d for d in cv_root.glob("fold[0-9]*") if d.is_dir())
    if not fold_dirs:
        fail(f"no cross-validation folds under {cv_root} (scripts/cv.py writes them)")
    block, text_thr, qa = C.choose(weights, desc, fold_dirs, inner=args.inner)
    if args.data:
        block["negations"] = C.negation_flags(Path(args.data), weights, desc, block["points"]["report"])
        block["negations_text_head"] = C.negation_flags(Path(args.data), weights, desc, None, text_thresholds=text_thr)
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
