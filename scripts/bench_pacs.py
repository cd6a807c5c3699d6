"""Benchmark the PACS path end to end: studies/s through find, fetch, decode, predict, SR, store, log.

    python scripts/bench_pacs.py --json bench/pacs/bench_pacs.json            # a local Orthanc, 48 studies
    python scripts/bench_pacs.py --studies 96 --size 3000 --workers 2 --json OUT

Starts Debian's Orthanc (with its DICOMweb plugin) on a free loopback port with its own temporary
storage, loads ``--studies`` chest studies made from the IU images (full-size ``--size`` px, 12-bit
in 16, a mix of JPEG Lossless, JPEG-LS, JPEG 2000 and RLE, MONOCHROME1 and 2, a lateral series in
every other study, an indication in every third), then scores them all with core.pacs.run.Runner
exactly as scripts/pacs.py does (model loaded first, not timed; a fresh prediction log in the temporary
folder; the ``--workers`` worker processes started first, not timed). JSON keys: ``studies_per_s`` (end to
end, wall clock), ``n_studies``, ``wall_s``, ``stage_s`` (stage -> seconds summed over processes: fetch, decode,
SR and store run in the workers beside the model), ``stage_ms_per_study``, ``syntax_mix``, ``size_px``,
``workers``, ``batch``, ``model_load_s``, ``workers_start_s``, ``setup_s``, ``cpu_count``, ``cpu_s_per_study``
(CPU seconds of the tool, its workers included, and of Orthanc per study),
``cpu_bound_studies_per_s_on_2_free_cores`` (2 / their sum: the rate two cores left to this work alone would
give), ``load_avg_1m`` (before and after: other work on a shared machine slows the wall clock, not the CPU cost)
and ``second_run_s`` (the same studies again: every one found done from the PACS).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scripts._cli import Parser, fail, load_predictor, run_main

SYNTAX_MIX = ("jpeg-lossless", "jpeg-ls", "jpeg2000", "rle")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process (Orthanc, a worker; from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_weights_and_data()
    p.add_argument("--studies", type=int, default=48)
    p.add_argument("--size", type=int, default=2500, help="longer side of the frontal images, px")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--model-threads", type=int, default=1, help="torch threads (as scripts/pacs.py)")
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    if args.studies < 1 or not 256 <= args.size <= 4000:
        fail("--studies must be positive and --size between 256 and 4000")
    return args


def _pacs_fixtures():
    """The tests' Orthanc launcher and study maker (tests/pacs_fixtures.py): a checkout's file, not part of
    the installed package, so it is loaded from its path."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "tests" / "pacs_fixtures.py"
    if not path.is_file():
        fail(f"{path} not found: the PACS benchmark runs from a checkout of the repository")
    spec = importlib.util.spec_from_file_location("pacs_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    args = parse_args(argv)
    pf = _pacs_fixtures()
    missing = pf.missing_tools()
    if missing:
        fail(f"missing Debian tools {missing}: apt-get install orthanc orthanc-dicomweb dcmtk libgdcm-tools")
    data = Path(args.data)
    if not (data / "manifest.csv").is_file():
        fail(f"IU X-ray data not found at {data} (pass --data or set IU_XRAY_DIR)")
    from core.pacs.connection import connect
    from core.pacs.run import STAGES, Runner
    from core.store import PredictionStore

    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp, pf.Orthanc(Path(tmp) / "orthanc") as pacs:
        t0 = time.perf_counter()
        pairs = pf.iu_pairs(data, args.studies)

        def make(i):
            frontal, lateral = pairs[i]
            uid = pf.study_uid_for(f"bench-{i}")
            out = [pf.make_instance(frontal, Path(tmp) / f"{i}-f.dcm", study_uid=uid, size=args.size,
                                    syntax=SYNTAX_MIX[i % len(SYNTAX_MIX)], monochrome1=i % 2 == 1,
                                    indication="Cough, fever; rule out pneumonia." if i % 3 == 0 else "",
                                    view="PA" if i % 4 else "AP").path]
            if lateral is not None and i % 2 == 0:
                out.append(pf.make_instance(lateral, Path(tmp) / f"{i}-l.dcm", study_uid=uid, view="LL", syntax="rle",
                                            size=int(args.size * 0.8), series_number=2).path)
            for path in out:
                pacs.upload(path)
                path.unlink()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(make, range(len(pairs))))
        setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        predictor = load_predictor(args.weights)
        model_load_s = time.perf_counter() - t0
        import torch
        torch.set_num_threads(args.model_threads)
        client = connect(pacs.url, environ=pacs.env())
        store = PredictionStore(Path(tmp) / "predictions.db")
        t0 = time.perf_counter()
        runner = Runner(client, predictor, store, workers=args.workers, batch=args.batch, processes=True).start()
        workers_start_s = time.perf_counter() - t0
        load_before = os.getloadavg()[0]
        workers = runner.worker_pids()

        def tool_cpu() -> float:
            return cpu_seconds() + sum(process_cpu_seconds(pid) for pid in workers)
        cpu0 = tool_cpu(), process_cpu_seconds(pacs.proc.pid)
        t0 = time.perf_counter()
        refs = client.find_studies()
        runner.timings["find"] = time.perf_counter() - t0
        outcomes = runner.run(refs)
        wall = time.perf_counter() - t0
        cpu_tool, cpu_pacs = tool_cpu() - cpu0[0], process_cpu_seconds(pacs.proc.pid) - cpu0[1]
        load_after = os.getloadavg()[0]
        scored = sum(o.status == "scored" for o in outcomes)
        if scored != len(pairs):
            fail(f"only {scored} of {len(pairs)} studies were scored: "
                 + "; ".join(o.reason for o in outcomes if o.status != "scored")[:300])
        t1 = time.perf_counter()
        again = runner.run(client.find_studies())
        second = time.perf_counter() - t1
        runner.close()
        assert all(o.status == "exists" for o in again)
    result = {
        "studies_per_s": round(len(outcomes) / wall, 3), "n_studies": len(outcomes), "wall_s": round(wall, 3),
        "stage_s": {k: round(runner.timings[k], 3) for k in STAGES},
        "stage_ms_per_study": {k: round(1000 * runner.timings[k] / len(outcomes), 1) for k in STAGES},
        "syntax_mix": list(SYNTAX_MIX), "size_px": args.size, "workers": args.workers, "batch": args.batch,
        "model_threads": args.model_threads,
        "model_load_s": round(model_load_s, 2), "workers_start_s": round(workers_start_s, 2),
        "setup_s": round(setup_s, 1), "cpu_count": os.cpu_count(),
        "cpu_s_per_study": {"tool": round(cpu_tool / len(outcomes), 3), "orthanc": round(cpu_pacs / len(outcomes), 3)},
        # what 2 cores left to this work alone would give: CPU seconds per study, tool and PACS together
        "cpu_bound_studies_per_s_on_2_free_cores": round(2 * len(outcomes) / max(cpu_tool + cpu_pacs, 1e-9), 2),
        "load_avg_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "second_run_s": round(second, 3), "second_run_studies_per_s": round(len(again) / second, 2),
        "command": "python scripts/bench_pacs.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
