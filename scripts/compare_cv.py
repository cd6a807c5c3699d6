"""Compare two cross-validated recipes on the same held-out reports (paired bootstrap).

    python scripts/compare_cv.py --a runs/cv/img15-lat-3fold:none_views --b weights/eval/cv/img15-3fold:none_image

Each side is a cross-validation folder (scripts/cv.py --root/--name) and an out-of-fold key
(<text mode>_<head>, e.g. none_image; none_views for the image head over frontal + lateral).
Folders joined by "+" are an ensemble: their probabilities averaged (e.g. two seeds of a recipe,
``--a weights/eval/cv/img15-3fold+weights/eval/cv/img15-seed1-3fold:none_image``).
Only folds both have finished count. Prints A's AUC, B's and A - B with its 95% paired
bootstrap CI per finding and for the macro; ``--json`` writes them.
"""
from __future__ import annotations

import json
from pathlib import Path

from scripts._cli import Parser, fail, run_main


def side(value: str) -> tuple[list[Path], str]:
    folders, sep, key = value.rpartition(":")
    roots = [Path(f) for f in folders.split("+") if f]
    if not sep or not roots or "_" not in key:
        fail(f"{value!r}: give FOLDER:KEY or FOLDER+FOLDER:KEY, e.g. runs/cv/img15-3fold:none_image")
    return roots, key


def main(argv=None) -> int:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="FOLDER:KEY of the recipe tried")
    p.add_argument("--b", required=True, help="FOLDER:KEY of the recipe it is compared with")
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--n-boot", type=int, default=1000)
    args = p.parse_args(argv)
    from core.evaluation.cross_validation import compare
    (root_a, key_a), (root_b, key_b) = side(args.a), side(args.b)
    out = compare(root_a, key_a, root_b, key_b, n_boot=args.n_boot)
    if not out["folds"]:
        fail(f"no fold has oof_{key_a}.csv in every A folder and oof_{key_b}.csv in every B folder "
             f"(A: {'+'.join(map(str, root_a))}; B: {'+'.join(map(str, root_b))})")
    print(f"{out['n_studies']} held-out reports, folds {', '.join(out['folds'])}: A = {out['a']}, B = {out['b']}")
    print(f"{'finding':14s} {'pos':>4s} {'A':>6s} {'B':>6s} {'A - B':>7s}  95% CI")
    for f, r in out["findings"].items():
        print(f"{f:14s} {r['positives']:4d} {r['a']:6.3f} {r['b']:6.3f} {r['diff']:+7.3f}  "
              f"[{r['diff_ci'][0]:+.3f}, {r['diff_ci'][1]:+.3f}]")
    m = out["macro"]
    print(f"{'macro':14s} {'':4s} {m['a']:6.3f} {m['b']:6.3f} {m['diff']:+7.3f}  "
          f"[{m['diff_ci'][0]:+.3f}, {m['diff_ci'][1]:+.3f}]")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
