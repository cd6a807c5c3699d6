"""Site validation: does this model work at my hospital? Measure it on the site's own studies, and adapt it.

    python scripts/validate_site.py --data site.csv --json site.json                  # + site.html
    python scripts/validate_site.py --data site.csv --json site.json --adapt weights-site
    python scripts/validate_site.py --pacs http://localhost:8042/dicom-web --reports reports.csv --json site.json
    CXR_WEIGHTS=weights-site streamlit run app.py        # the adapted weights (or --weights for any CLI)

``--data``: a CSV ``image,report[,indication,id]`` with optional ``label_<Finding>`` columns (1, 0 or empty;
rows sharing an ``id`` are one study with several images; core.data.site_table). Without label columns the
labels are read from the report text (core.evaluation.site_labels); with both, their agreement is measured.
``--pacs`` with ``--reports``: the chest CR/DX studies on a DICOMweb server (credentials in $CXR_PACS_USER /
$CXR_PACS_PASSWORD, never on the command line), each matched to a row of the reports CSV by
``study_uid`` (StudyInstanceUID) or ``accession`` (AccessionNumber) (core.pacs.site_source).

Per task (image only; image + indication on the studies that have one) and finding: positives, AUC with
its 95% CI, calibration slope and top bin, sensitivity and specificity at the operating point in use, each
beside the shipped model's cross-validated numbers, and a verdict by CI; the guard's out-of-distribution rate
(core.evaluation.site_measure). ``--json`` is ../shared/DESIGN.md's shape; the printable HTML report goes
beside it (``--html``). The model runs in blocks saved under ``OUT.parts/``: a killed run resumes where it
stopped (core.serving.site_run). ``--adapt OUTDIR`` refits the calibration maps and operating points on the
site's studies, cross-fitted and gated (core.evaluation.site_adapt), and writes a new weights folder; the
shipped weights are never written. Bad input: one line on stderr, exit 2 (also when no finding could be
adapted: the line says how many positives each needs).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from scripts._cli import Parser, fail, load_predictor, read_weights_description, run_main

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=os.environ.get("CXR_WEIGHTS") or str(ROOT / "weights"),
                   help="the weights folder (default: $CXR_WEIGHTS, else the shipped weights/)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="SITE.csv", help="the site's studies: image,report[,indication,id,label_*]")
    src.add_argument("--pacs", metavar="URL", help="a DICOMweb root to read the site's studies from")
    p.add_argument("--reports", metavar="CSV", help="with --pacs: study_uid or accession, report[,indication,label_*]")
    p.add_argument("--since", metavar="YYYYMMDD", help="with --pacs: studies from this date on")
    p.add_argument("--json", required=True, dest="json_out", metavar="OUT", help="write the validation JSON here")
    p.add_argument("--html", metavar="OUT.html", help="the printable report (default: OUT with .html)")
    p.add_argument("--predictions", metavar="OUT.csv", help="also write each study's probabilities and labels")
    p.add_argument("--site", help="the site's name in every output (default: the CSV's or server's name)")
    p.add_argument("--operating-point", default=None, metavar="NAME",
                   help="measure sensitivity and specificity at this point (default: each mode's own)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    p.add_argument("--adapt", metavar="OUTDIR", help="write site-adapted weights here (a new folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p.parse_args(argv)


def read_table(args, findings):
    from core.data.site_table import SiteError, read_site_csv
    if args.data:
        try:
            return read_site_csv(Path(args.data), findings), _load_file
        except SiteError as exc:
            fail(str(exc))
    if not args.reports:
        fail("--pacs needs --reports CSV (the site's reports keyed by study_uid or accession)")
    from core.pacs.connection import connect
    from core.pacs.site_source import pacs_table
    pacs = connect(args.pacs)
    return pacs_table(pacs, Path(args.reports), findings, since=args.since)


def _load_file(source: str):
    from core.data.images import decode_image
    path = Path(source)
    return decode_image(path.read_bytes(), filename=path.name)


def progress_bar(label: str, enabled: bool):
    """(a callback drawing a progress bar over the images on stderr (tqdm), the function that closes it)."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm
    bars: list = []

    def step(done: int, total: int) -> None:
        if not bars:  # made at the first report, when the total is known
            bars.append(tqdm(total=total, unit="image", desc=label, file=sys.stderr, dynamic_ncols=True))
        bars[0].n = done
        bars[0].refresh()
    return step, lambda: [b.close() for b in bars]


def write_predictions(path: Path, table, preds, Y, findings) -> None:
    import csv
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "images", *[f"{t}:{f}" for t in preds.probs for f in findings],
                    *[f"label_{f}" for f in findings], "out_of_distribution"])
        for k, s in enumerate(table.studies):
            probs = ["" if v != v else f"{v:.6f}" for t in preds.probs for v in preds.probs[t][k]]
            labels = ["" if v != v else int(v) for v in Y[k]]
            w.writerow([s.id, len(s.images), *probs, *labels, int(all(preds.ood_per_study[k]))])


def adapt(args, desc, table, preds, Y, labels: str, site: str) -> dict:
    """Plan, gate and write the adapted weights; the result's ``adaptation`` block."""
    from core.evaluation.site_adapt import (
        AdaptError,
        adapted_description,
        plan_adaptation,
        refusals,
        write_adapted,
    )
    plan = plan_adaptation(desc, Y, preds.probs, site=site, n_boot=args.bootstrap)
    block = {"out": str(args.adapt), "plan": plan, "refused": refusals(plan), "version": None}
    try:
        new = adapted_description(desc, plan, site=site, n_studies=len(table.studies), labels=labels,
                                  source=table.source)
        write_adapted(Path(args.weights), Path(args.adapt), new)
    except AdaptError as exc:
        block["error"] = str(exc)
        return block
    block["version"] = new.version
    adapted = [f"{t}: {', '.join(fs)}" for t, fs in new.site_adaptation["adapted"].items() if fs]
    block["summary"] = (f"Written to {args.adapt} as version {new.version}: " + "; ".join(adapted) + ". Numbers "
                        f"before → after are cross-fitted over {new.site_adaptation['parts']} parts of the site's "
                        "studies (each part scored by a map fitted on the others).")
    return block


def print_summary(result: dict) -> None:
    for key, task in result["tasks"].items():
        print(f"\n{task['task']} ({key}): {task['n_studies']} studies, flags at {task['operating_point']}")
        for f, e in task["findings"].items():
            auc = "—" if e["auc"] is None else f"{e['auc']:.3f}"
            ci = e.get("auc_ci") or [float("nan")] * 2
            ship = e.get("shipped_auc")
            cal = (e.get("calibration_verdict") or {}).get("verdict", "—")
            op = ""
            if e.get("specificity") is not None:
                op = f"; sens {e['sensitivity'] if e['sensitivity'] is not None else '—'} spec {e['specificity']:.3f}"
            print(f"  {f:<14} {e['positives']:>4} pos  AUC {auc} [{ci[0]:.3f}, {ci[1]:.3f}] vs shipped "
                  f"{ship if ship is not None else '—'}: {e['verdict']}; calibration: {cal}{op}")
    ood = result["out_of_distribution"]
    print(f"\nout of distribution (the guard): {ood['out_of_distribution']} of {ood['images']} images")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.operating_point is not None:
        from core.evaluation.operating_targets import parse_target
        args.operating_point = parse_target(args.operating_point)
    desc = read_weights_description(Path(args.weights))
    findings = list(desc.findings)
    if args.adapt and Path(args.adapt).resolve() == Path(args.weights).resolve():
        fail(f"{args.adapt} is the weights folder being validated; adapt into a new folder")
    if args.adapt and (Path(args.adapt) / "model.safetensors").exists():
        fail(f"{args.adapt} already holds weights; adapt into a new, empty folder")
    table, load_image = read_table(args, findings)
    site = args.site or (Path(args.data).stem if args.data else args.pacs)
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)

    from core.data.site_table import SiteError
    from core.evaluation.site_report import site_report_html
    from core.evaluation.site_validation import validate
    from core.serving.sharded_batch import PartsError
    from core.serving.site_run import predict_site
    predictor = load_predictor(args.weights)
    step, close = progress_bar(f"{site}: {len(table.studies)} studies", not args.no_progress)
    try:
        preds = predict_site(predictor, table, load_image=load_image, out=out, target=args.operating_point,
                             on_progress=step)
    except (SiteError, PartsError) as exc:
        fail(str(exc))
    finally:
        close()
    result, Y = validate(desc, table, preds.probs, preds.ood, preds.ood_per_study, site=site,
                         target=args.operating_point, n_boot=args.bootstrap)
    result["predicted_in_this_run"] = preds.predicted_now
    if args.adapt:
        result["adaptation"] = adapt(args, desc, table, preds, Y, result["labels"], site)
    out.write_text(json.dumps(result, indent=1) + "\n")
    html_path = Path(args.html) if args.html else out.with_suffix(".html")
    html_path.write_text(site_report_html(result))
    if args.predictions:
        write_predictions(Path(args.predictions), table, preds, Y, findings)
    print_summary(result)
    print(f"\nwrote {out} and {html_path}")
    adaptation = result.get("adaptation")
    if adaptation:
        for line in adaptation["refused"]:
            print(f"not adapted: {line}", file=sys.stderr)
        if adaptation.get("error"):
            fail(adaptation["error"])
        print(adaptation["summary"])
    return 0


if __name__ == "__main__":
    run_main(main)
