"""Does report QA catch what matters? Edit real reports and count the discordance flags.

    python scripts/report_qa.py --weights weights --data ../shared/iu-xray --split test --json qa.json

For every study of the split (its first frontal film, as a user would upload it, and its
FINDINGS + IMPRESSION) the shipped predictor runs in report mode on:

- the unedited report: how often is a study flagged for any finding (false flags, mostly);
- for each finding, on its positive studies: **deny** (every sentence about it replaced by a
  normal statement, e.g. "The heart size is normal.") and **delete** (those sentences
  removed): how often is the study flagged for that finding (caught);
- for each finding, on its negative studies: **add** a false positive statement ("The heart
  is enlarged."): how often is it flagged.

Rates come with 95% Wilson intervals and their counts. Findings the image does not support
(core.evaluation.evidence) are never flagged, by design; they are listed with n and no catch.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.evaluation.report_edits import EDITS, edit_report
from scripts._cli import Parser, fail, load_predictor, run_main


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="weights", help="the weights folder")
    p.add_argument("--data", required=True, help="the data folder")
    p.add_dataset()
    p.add_argument("--split", choices=["val", "test", "all"], default="test", help="the weights' split to edit")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the catch and flag rates here")
    p.add_argument("--batch-size", type=int, default=32, help="studies per model call")
    return p.parse_args(argv)


def rate(caught: int, n: int) -> dict:
    from core.evaluation.metrics import wilson_ci
    return {"n": n, "flagged": caught, "rate": (caught / n) if n else None, "ci": wilson_ci(caught, n)}


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.data.images import load_png_gray
    from core.data.reports import DataLayoutError
    from core.evaluation.split_eval import select_reports, weights_collection
    predictor = load_predictor(args.weights)
    desc = predictor.description
    try:
        coll = weights_collection(desc, Path(args.data), args.dataset)
        reports = select_reports(coll.reports, args.split, desc.split)
    except (DataLayoutError, ValueError) as exc:
        fail(str(exc))
    reports = [r for r in reports if r.text("report").strip()]
    if not reports:
        fail(f"no report of the {args.split} split has report text and a frontal image in {args.data}")
    jobs = []   # (study index, finding or None, edit or None, text)
    for i, r in enumerate(reports):
        text = r.text("report")
        jobs.append((i, None, None, text))
        for k, f in enumerate(desc.findings):
            for edit in (("deny", "delete") if r.labels[k] else ("add",)):
                jobs.append((i, f, edit, edit_report(text, f, edit)))
    grays = {}
    flags = []
    for s in range(0, len(jobs), args.batch_size):
        chunk = jobs[s:s + args.batch_size]
        for i, *_ in chunk:
            if i not in grays:
                grays[i] = load_png_gray(coll.image_paths[reports[i].image_ids[0]])
        preds = predictor.predict_batch([grays[i] for i, *_ in chunk], [t for *_, t in chunk], ["report"] * len(chunk))
        flags += [set(p.discordant) for p in preds]
        if len(grays) > 2 * args.batch_size:   # keep memory flat
            done = {i for i, *_ in chunk}
            grays = {i: g for i, g in grays.items() if i in done}
    unedited = [fl for (i, f, e, _), fl in zip(jobs, flags, strict=True) if f is None]
    out = {"split": args.split, "n_studies": len(reports), "model": predictor.version,
           "image": "first frontal film of each report", "mode": "report",
           "supported": (desc.discordance.supported if desc.discordance else None) or [],
           "budget": desc.discordance.budget if desc.discordance else None,
           "unedited_any": rate(sum(bool(fl) for fl in unedited), len(unedited)),
           "unedited_per_finding": {f: rate(sum(f in fl for fl in unedited), len(unedited)) for f in desc.findings},
           "edits": {}}
    for f in desc.findings:
        out["edits"][f] = {}
        for edit in EDITS:
            hits = [f in fl for (i, g, e, _), fl in zip(jobs, flags, strict=True) if g == f and e == edit]
            out["edits"][f][edit] = rate(sum(hits), len(hits))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    u = out["unedited_any"]
    print(f"{args.split}: {len(reports)} studies; unedited reports flagged for any finding: "
          f"{u['rate']:.1%} [{u['ci'][0]:.1%}, {u['ci'][1]:.1%}] ({u['flagged']}/{u['n']})")
    for f in desc.findings:
        cells = []
        for edit in EDITS:
            c = out["edits"][f][edit]
            cells.append(f"{edit} {c['rate']:.0%} ({c['flagged']}/{c['n']})" if c["n"] else f"{edit} -")
        tag = "" if f in out["supported"] else "  [not supported by the image: never flagged]"
        print(f"  {f:13s} " + "  ".join(cells) + tag)
    return 0


if __name__ == "__main__":
    run_main(main)
