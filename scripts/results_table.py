"""Print the README's results table (markdown) from the evaluation JSONs in weights/eval/.

    python scripts/results_table.py [--eval weights/eval]

The calibration column is the test split's calibration slope (after the shipped maps; "not calibrated"
where a finding has none) for Cardiomegaly and Atelectasis, from recalibration.json
(scripts/recalibrate.py). A mean ECE is not shown: at 1-10% prevalence most reports sit in the lowest
bin, so it stays small whatever the top bins do (docs/calibration.md).
"""
from __future__ import annotations

import json
from pathlib import Path

from scripts._cli import Parser, fail, run_main

ROWS = [("none", "image", "Image only"), ("none", "fusion", "Fused, no text"),
        ("indication", "fusion", "Image + indication (fused)"), ("indication", "text", "Indication text only"),
        ("report", "image", "Image head (report mode)"), ("report", "text", "Report text only"),
        ("report", "fusion", "Image + report (fused)")]

# text that must not hurt: the fused indication-mode model against the image alone
COMPARE = [(("indication", "fusion", "Image + indication (fused)"), ("none", "image", "image only"))]


def fmt(v, ci=None) -> str:
    if v is None or v != v:
        return "n/a"
    return f"{v:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def main(argv=None) -> int:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--eval", default=str(Path(__file__).resolve().parents[1] / "weights" / "eval"))
    args = p.parse_args(argv)
    folder = Path(args.eval)
    if not folder.is_dir():
        fail(f"{folder} does not exist; train or evaluate first")
    from core.data.labels import FINDINGS
    from core.evaluation.eval_files import BASELINE, eval_name
    lines = ["| Text mode / head | Macro AUC [95% CI] | " + " | ".join(FINDINGS)
             + " | calibration slope, Cardiomegaly / Atelectasis |",
             "|---|---|" + "---|" * len(FINDINGS) + "---|"]
    recal_path = folder / "recalibration.json"
    recal = json.loads(recal_path.read_text()) if recal_path.is_file() else {}
    entries = [(f"{eval_name('test', m, h)}.json", label) for m, h, label in ROWS] + [
        (f"{BASELINE}.json", "Keyword rule on the report")]
    keys = [f"{m}/{h}" for m, h, _ in ROWS] + [None]
    for (name, label), key in zip(entries, keys, strict=True):
        path = folder / name
        if not path.is_file():
            continue
        j = json.loads(path.read_text())
        cells = [fmt(j["auc"][f]) for f in FINDINGS]
        lines.append(f"| {label} | {fmt(j['macro_auc'], j['macro_auc_ci'])} | " + " | ".join(cells)
                     + f" | {slopes(recal, key)} |")
    n = json.loads((folder / f"{eval_name('test', 'none', 'image')}.json").read_text())
    print("\n".join(lines))
    print(f"\n{n['n_studies']} test reports; positives: " +
          ", ".join(f"{f} {n['n_positive'][f]}" for f in FINDINGS) + ".")
    for (ma, ha, la), (mb, hb, lb) in COMPARE:
        paths = folder / f"{eval_name('test', ma, ha)}.csv", folder / f"{eval_name('test', mb, hb)}.csv"
        if all(p.is_file() for p in paths):
            d, ci = paired_difference(*paths, FINDINGS)
            print(f"{la} minus {lb}: macro AUC {d:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] (paired bootstrap over reports).")
    return 0


def slopes(recal: dict, key: str | None) -> str:
    """'0.69 / 1.11': the test split's calibration slope after the shipped map; 'not calibrated' where the
    weights carry none for that mode, head and finding (a map dropped by the cross-validation gate too)."""
    block = (recal.get("test") or {}).get(key) if key else None
    if not block:
        return "—"
    mode, head = key.split("/")
    shipped = ((recal.get("maps") or {}).get(mode) or {}).get(head) or {}
    out = []
    for f in ("Cardiomegaly", "Atelectasis"):
        r = block.get(f) or {}
        out.append(f"{r['after']['slope']:.2f}" if r.get("after") and "a" in shipped.get(f, {}) else "not calibrated")
    return " / ".join(out)


def paired_difference(path_a: Path, path_b: Path, findings) -> tuple[float, list[float]]:
    import numpy as np
    import pandas as pd

    from core.evaluation.metrics import paired_macro_auc_difference
    a, b = pd.read_csv(path_a).set_index("uid"), pd.read_csv(path_b).set_index("uid")
    b = b.loc[a.index]  # the same reports in the same order
    Y = a[[f"label_{f}" for f in findings]].to_numpy()
    if not np.array_equal(Y, b[[f"label_{f}" for f in findings]].to_numpy()):
        fail(f"{path_a.name} and {path_b.name} disagree on the labels")
    return paired_macro_auc_difference(Y, a[list(findings)].to_numpy(), b[list(findings)].to_numpy())


if __name__ == "__main__":
    run_main(main)
