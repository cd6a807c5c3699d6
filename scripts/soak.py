"""Soak test: many predictions in one process, watching resident memory level off.

    python scripts/soak.py --weights weights --data ../shared/iu-xray --n 1000 --json var/reliability/soak.json
    python scripts/soak.py --weights W --data D --n 1000 --json OUT --db var/soak.db   # also log every row

Cycles through the images under --data (NLMCXR_png/ of an Open-I folder, else every PNG,
JPEG or DICOM below it) with a rotating set of report texts, doing what the Predict page does
for each: read the bytes, decode, clean the text, then predict (and, with --db, log the row)
through the page's own path, core.serving.predict_and_log.predict_and_log.
Resident memory (VmRSS) is sampled before the model loads, after it loads, after a warm-up and
every --sample-every predictions. Memory "levels off" when it grows by less than --max-growth-mb
over the second half of the run. The JSON has the numbers; the script exits 0 whether or not it
levelled off (read the verdict), 2 on bad input.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from scripts._cli import Parser, fail, load_predictor, pct, run_main

TEXTS = [  # (text, mode): short and long, both modes, image only
    ("Cough and fever for three days.", "indication"),
    ("The heart is enlarged. Mild pulmonary vascular congestion. No focal consolidation.", "report"),
    ("", "none"),
    ("Heart size is normal. The lungs are clear. No pleural effusion or pneumothorax. " * 12, "report"),
    ("Shortness of breath, rule out pneumonia.", "indication"),
    ("Left basilar opacity, atelectasis versus consolidation. Cardiomediastinal silhouette stable.", "report"),
]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--data", required=True, help="Open-I folder (NLMCXR_png/) or any folder of images")
    p.add_argument("--n", type=int, default=1000, help="predictions to make")
    p.add_argument("--json", required=True, dest="json_out")
    p.add_argument("--db", help="also log every prediction to this SQLite file (as the app does)")
    p.add_argument("--images", type=int, default=200, help="distinct images to cycle through")
    p.add_argument("--warmup", type=int, default=20, help="predictions before the 'start' memory sample")
    p.add_argument("--sample-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--max-growth-mb", type=float, default=25.0,
                   help="growth over the second half under which memory counts as levelled off")
    args = p.parse_args(argv)
    if args.n < 2 or args.images < 1 or args.sample_every < 1 or args.warmup < 0:
        fail("--n must be at least 2; --images and --sample-every at least 1; --warmup at least 0")
    return args


def rss_mb() -> float:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def find_images(data: Path, limit: int) -> list[Path]:
    folder = data / "NLMCXR_png" if (data / "NLMCXR_png").is_dir() else data
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        fail(f"no PNG, JPEG or DICOM images under {folder}")
    return paths[:limit]


def main(argv=None) -> int:
    args = parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        fail(f"data folder {data} not found")
    images = find_images(data, args.images)
    rss_before_load = rss_mb()

    import torch

    from core.data.images import ImageDecodeError, decode_image
    from core.data.text_clean import clean_text
    from core.serving.predict_and_log import Study, predict_and_log
    from core.store import PredictionStore, StoreError

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    predictor = load_predictor(args.weights)
    load_s = time.perf_counter() - t0
    rss_after_load = rss_mb()
    store = None
    if args.db:
        try:
            store = PredictionStore(args.db)
        except StoreError as exc:
            fail(str(exc))

    samples: list[tuple[int, float]] = []   # (predictions done, RSS MB)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rss_start = rss_after_load
    started = time.perf_counter()
    for i in range(args.n):
        path = images[i % len(images)]
        text, mode = TEXTS[i % len(TEXTS)]
        t = time.perf_counter()
        try:
            raw = path.read_bytes()
            img = decode_image(raw, filename=path.name)
            study = Study(img.gray, raw, path.name, clean_text(text), mode, colorfulness=img.colorfulness)
            done = predict_and_log(predictor, store, study, source="cli", keep_name=True)
            if done.log_error is not None:
                raise done.log_error
        except (ImageDecodeError, StoreError, OSError) as exc:  # counted, not fatal: a soak keeps going
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        latencies.append((time.perf_counter() - t) * 1000)
        done = i + 1
        if done == args.warmup:
            rss_start = rss_mb()
        if done % args.sample_every == 0 or done == args.n:
            samples.append((done, round(rss_mb(), 1)))
    elapsed = time.perf_counter() - started
    if not samples:
        fail("no prediction succeeded; see the error counts: " + json.dumps(errors))

    half = args.n // 2
    at_half = next((mb for done, mb in samples if done >= half), samples[-1][1])
    rss_end = samples[-1][1]
    second_half_growth = rss_end - at_half
    peak = max(mb for _, mb in samples)
    out = {
        "n": args.n, "succeeded": len(latencies), "errors": errors, "distinct_images": len(images),
        "torch_threads": torch.get_num_threads(), "logged_to_db": bool(store),
        "weights": str(args.weights), "model": predictor.version, "load_s": round(load_s, 2),
        "elapsed_s": round(elapsed, 1), "predictions_per_s": round(len(latencies) / elapsed, 2),
        "latency_ms_p50": round(pct(latencies, 50), 1), "latency_ms_p95": round(pct(latencies, 95), 1),
        "latency_ms_max": round(max(latencies), 1),
        "rss_mb_before_load": round(rss_before_load, 1), "rss_mb_after_load": round(rss_after_load, 1),
        "rss_mb_start": round(rss_start, 1), "rss_mb_at_half": at_half, "rss_mb_peak": peak,
        "rss_mb_end": rss_end, "rss_mb_growth_second_half": round(second_half_growth, 1),
        "max_growth_mb": args.max_growth_mb, "levels_off": second_half_growth < args.max_growth_mb,
        "rss_samples": samples,
    }
    if store is not None:
        out["db_rows"] = store.count()
        out["db_integrity_ok"] = store.integrity_ok()
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    verdict = "levels off" if out["levels_off"] else "KEEPS GROWING"
    print(f"{len(latencies)}/{args.n} predictions in {elapsed:.0f} s (p50 {out['latency_ms_p50']} ms, "
          f"p95 {out['latency_ms_p95']} ms); RSS start {out['rss_mb_start']} MB, peak {peak} MB, end {rss_end} MB, "
          f"second half {second_half_growth:+.1f} MB: {verdict}; errors {sum(errors.values())} -> {args.json_out}")
    return 0


if __name__ == "__main__":
    run_main(main)
