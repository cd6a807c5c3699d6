"""Score the chest X-rays of a PACS over DICOMweb and store each result back as a DICOM SR.

    export CXR_PACS_USER=alice CXR_PACS_PASSWORD=...          # or a ~/.netrc entry for the host
    python scripts/pacs.py --url http://localhost:8042/dicom-web --since 20261201 --json out.json
    python scripts/pacs.py --url URL --study 1.2.840.113619.2.55.3 --dry-run
    python scripts/pacs.py --url URL --all --follow              # keep polling; SIGTERM stops it cleanly
    python scripts/pacs.py --url URL --all --operating-point "sensitivity 0.80"

Finds the CR/DX studies (QIDO-RS), picks the frontal chest image of each (ViewPosition, else the
guard), reads the indication from its header (indication mode; image-only without one), predicts,
decides each finding at the operating point (``--operating-point``; default: each mode's own, named in
every output) — flagged, not flagged or not assessed (core.serving.decision) — stores one
Comprehensive SR per study, model version and operating point into the study (STOW-RS) and logs the
prediction (source 'cli', the study named by a hash of its UID). Running it again adds nothing.
Each study's line says what was flagged and what was not assessed, never a number the app hides.
See docs/pacs.md.

``--json OUT`` writes {"studies": [...]}: per study ``study_uid``, ``status`` (scored | exists |
skipped), ``reason``, ``source_sop_instance_uid``, ``sr_sop_instance_uid``, ``text_mode``, ``fusion``,
``image``, ``text`` (each head's number, as ``predict.py --json``; ``text`` null when no text was
read), ``probability`` (the calibrated number a reader may see, null where not assessed or not
calibrated), ``decision`` (finding -> flagged | not flagged | not assessed), ``operating_point``
(assessed finding -> sensitivity, specificity, their CIs, PPV, source), ``operating_point_name``,
``not_assessed`` (finding -> why), ``out_of_distribution``, ``model``. Exit 0 when the run completed
(skipped studies included; with --follow, when SIGTERM or Ctrl-C stopped it); 2 on bad arguments (an
unknown operating point too) or refused credentials (one line on stderr); 1 when the PACS failed
mid-run (one line; what was stored so far is complete, the rest is left for a re-run); 130 when a
one-off run was stopped by a signal before the end.
Credentials come only from the environment (CXR_PACS_USER / CXR_PACS_PASSWORD) or ~/.netrc.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from scripts._cli import Parser, fail, load_predictor, one_line, run_main

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the DICOMweb root, e.g. http://localhost:8042/dicom-web")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", metavar="UID", help="one study by its Study Instance UID")
    which.add_argument("--since", metavar="YYYYMMDD", help="studies from this date on")
    which.add_argument("--all", action="store_true", help="every CR/DX study on the server")
    p.add_argument("--follow", action="store_true", help="keep polling for new studies until SIGTERM or Ctrl-C")
    p.add_argument("--interval", type=float, default=30.0, help="--follow: seconds between polls (default 30)")
    p.add_argument("--dry-run", action="store_true", help="find, fetch and predict, but store and log nothing")
    p.add_argument("--json", metavar="OUT", help="write the per-study results here")
    p.add_argument("--weights", default=str(Path(__file__).resolve().parents[1] / "weights"))
    p.add_argument("--workers", type=int, default=2,
                   help="worker processes: fetch and decode ahead of the model, build and store the SRs")
    p.add_argument("--batch", type=int, default=8, help="studies per model call")
    p.add_argument("--model-threads", type=int, default=1,
                   help="torch threads for the model (default 1: the worker processes use the other cores; "
                        "two model threads beside them oversubscribe the CPU and run several times slower)")
    p.add_argument("--no-log", action="store_true", help="store the SRs but do not write the prediction log")
    p.add_argument("--overlay", action="store_true",
                   help="also store a Grad-CAM overlay of the leading finding (Secondary Capture series)")
    p.add_argument("--operating-point", default=None, metavar="NAME",
                   help='the operating point each finding is decided at, e.g. "specificity 0.95" or "sensitivity '
                        '0.80" (default: each text mode\'s own; every output names the one used)')
    args = p.parse_args(argv)
    if args.operating_point is not None:
        from core.evaluation.operating_targets import TargetError, parse_target
        try:
            args.operating_point = parse_target(args.operating_point)
        except TargetError as exc:
            fail(str(exc))
    if args.study and not (UID_RE.match(args.study) and len(args.study) <= 64):
        fail(f"--study {args.study!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    if args.since:
        try:
            datetime.strptime(args.since, "%Y%m%d")
        except ValueError:
            fail(f"--since {args.since!r} is not a date written YYYYMMDD")
    if args.interval <= 0 or args.workers < 1 or args.batch < 1 or args.model_threads < 1:
        fail("--interval, --workers, --batch and --model-threads must be positive")
    if args.json and not Path(args.json).expanduser().resolve().parent.is_dir():
        fail(f"--json {args.json}: its folder does not exist")
    return args


def write_json(path: str, outcomes, *, dry_run: bool) -> None:
    """Atomically: a reader never sees half a file."""
    out = Path(path).expanduser()
    data = {"studies": [o.to_json() for o in outcomes], "dry_run": dry_run}
    fd, tmp = tempfile.mkstemp(dir=out.resolve().parent, prefix=".pacs-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, out)


def main(argv=None) -> int:
    args = parse_args(argv)
    import logging
    for name in ("dicomweb_client", "highdicom", "urllib3"):  # their warnings would reach stderr as extra lines
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False
    from core.pacs.connection import PacsConfigError, PacsError, PacsUnavailable, connect
    from core.pacs.run import Runner
    try:
        pacs = connect(args.url)
    except PacsConfigError as exc:
        fail(str(exc))
    stop = threading.Event()

    def _stop(signum, frame):  # SIGTERM / Ctrl-C: finish the study in hand, then stop
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    outcomes: list = []
    runner = None
    try:
        pacs.check()  # refused credentials or no server: one line, before the model loads
        predictor = load_predictor(args.weights)
        import torch
        torch.set_num_threads(args.model_threads)
        store = None
        if not args.dry_run and not args.no_log:
            from core.store import PredictionStore
            store = PredictionStore()

        def show(o):
            print(o.line(), flush=True)
        runner = Runner(pacs, predictor, store, dry_run=args.dry_run, workers=args.workers, batch=args.batch,
                        processes=True, stop=stop, on_outcome=show, overlay=args.overlay,
                        target=args.operating_point).start()
        since = args.since
        if args.follow and not (args.since or args.study or args.all):
            since = datetime.now(UTC).strftime("%Y%m%d")
        looked: dict[str, int | str] = {}
        while True:
            refs = pacs.find_studies(since=since, study_uid=args.study)
            if args.study and not refs and not args.follow:
                print(f"no CR/DX study with UID {args.study} on the PACS", file=sys.stderr)
            fresh = [r for r in refs if looked.get(r.study_uid) != r.instances]
            for o in runner.run(fresh):
                outcomes.append(o)
            for r in fresh:
                looked[r.study_uid] = r.instances
            if args.json:
                write_json(args.json, outcomes, dry_run=args.dry_run)
            if not args.follow or stop.wait(args.interval):
                break
    except PacsUnavailable as exc:  # mid-run: the studies done are complete; a re-run does the rest
        if args.json:
            write_json(args.json, outcomes, dry_run=args.dry_run)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except PacsError:
        if args.json and outcomes:
            write_json(args.json, outcomes, dry_run=args.dry_run)
        raise  # refused credentials, a URL that is not DICOMweb: one line, exit 2 (run_main)
    finally:
        if runner is not None:
            runner.close()  # the worker processes end with the command
    counts = {s: sum(o.status == s for o in outcomes) for s in ("scored", "exists", "skipped")}
    flagged = sum(bool(o.decisions.flagged()) for o in outcomes if o.decisions is not None)
    print(f"done: {counts['scored']} scored ({flagged} with a flag at {' / '.join(runner.points)}), "
          f"{counts['exists']} already had an SR of model {runner.version} at that operating point, "
          f"{counts['skipped']} skipped" + (" (dry run: nothing stored or logged)" if args.dry_run else ""),
          file=sys.stderr)
    if stop.is_set() and not args.follow and len(outcomes) < len(fresh):  # stopped early: a re-run does the rest
        print("stopped before the end by a signal; run the same command again for the rest", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    run_main(main)
