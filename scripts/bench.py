"""Benchmark inference, attribution and start-up on the shipped weights and real images.

    python scripts/bench.py --json bench.json [--weights weights] [--data ../shared/iu-xray]

Measures, in one run: single-study latency (image + report text) p50/p95, batch throughput
at the best batch size, attribution (Grad-CAM heatmap + text tokens) p50, cold start (new
process -> first prediction), peak resident memory of a serving process, a naive baseline (fp32 eager, batch 1,
fresh decode and full-length padding each call, no caching) and the compute floor: the
model's FLOPs at its input size divided by the matrix-multiply rate measured here. The
floor is fp32's; the served image encoder is int8 when the weights carry a calibration
(core.model.int8_image), which is how p50 can come within 2x of it.
"""
from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts._cli import Parser, fail, load_predictor, pct, run_main

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_weights_and_data()
    p.add_argument("--json", required=True, dest="json_out", metavar="OUT", help="write the measurements here")
    p.add_argument("--studies", type=int, default=64, help="real studies used for the measurements")
    p.add_argument("--repeats", type=int, default=30, help="single-study predictions timed")
    return p.parse_args(argv)


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def matmul_gflops(seconds: float = 2.0) -> float:
    """Best fp32 matrix-multiply rate of this machine, all threads (GFLOP/s)."""
    import torch
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best, end = 0.0, time.time() + seconds
    for _ in range(3):
        a @ b
    while time.time() < end:
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * 1024 ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def model_gflops(weights: str, gray, text) -> float:
    """FLOPs of one study's forward pass (image + text at its real length) at the model's
    input size, counted on the plain fp32 model (int8 kernels are not counted by torch)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from core.serving.predictor import Predictor
    plain = Predictor.load(weights, fast=False)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        plain.predict(gray, text, "report")
    return counter.get_total_flops() / 1e9


def serving_process(weights: str, image: Path, text: str) -> tuple[float, float]:
    """A fresh process serving like the app: (seconds to the first prediction, peak RSS in
    MB after that prediction, freezing the encoders, a batch of 16 and one attribution). Peak RSS is the child's
    VmHWM: getrusage's ru_maxrss survives exec and would report this (parent) process."""
    code = ("import sys,time; t=time.perf_counter()\n"
            "from core.serving.predictor import Predictor; from core.data.images import decode_image\n"
            f"p = Predictor.load({weights!r}); g = decode_image(open({str(image)!r},'rb').read()).gray\n"
            f"p.predict(g, {text!r}, 'report'); first = time.perf_counter()-t; p.freeze_encoders()\n"
            f"p.predict_batch([g]*16, [{text!r}]*16, ['report']*16)\n"
            f"p.attribute(g, {text!r}, 'report', finding='Edema')\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
            "print(first, int(hwm) / 1024)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        fail(f"serving process failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
    first, rss = res.stdout.split()[-2:]
    return float(first), float(rss)


def naive_predict(model, tokenizer, metadata, path: Path, text: str):
    """The baseline: decode the file again, pad text to max length, fp32 eager, no_grad."""
    import numpy as np
    import torch
    from PIL import Image

    from core.model.description import model_facts
    pre = metadata["preprocessing"]
    with Image.open(path) as im:
        g = np.asarray(im.convert("L").resize((pre["image_size"],) * 2, Image.BILINEAR), dtype=np.float32)
    x = torch.from_numpy((g / 255.0 - pre["mean"]) / pre["std"])[None, None]
    enc = tokenizer([text], padding="max_length", truncation=True, max_length=metadata["text_max_len"],
                    return_tensors="pt")
    with torch.no_grad():
        report = torch.tensor([model_facts(metadata).text_modes.index("report")])
        logits = model(x, enc["input_ids"], enc["attention_mask"], report)
        return torch.sigmoid(logits["fusion"])


def frozen_epoch_speedup(predictor, grays, texts, batch: int = 32) -> dict:
    """Training samples/s of a frozen-phase step on cached features versus the same step
    with the frozen encoders recomputed (forward only) for every batch."""
    import torch

    from core.model.inference import image_features, text_features
    from core.training.trainer import HeadsNet
    model = predictor.model
    g = (grays * (batch // len(grays) + 1))[:batch]
    t = (texts * (batch // len(texts) + 1))[:batch]
    x = torch.cat([predictor.image_tensor(im) for im in g])
    heads = HeadsNet(model)
    params = [p for n, p in model.named_parameters() if n.startswith(("image_proj", "text_proj", "image_head",
                                                                        "text_head", "fusion_head"))]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4)
    mode = torch.full((batch,), predictor.text_modes.index("report"), dtype=torch.long)
    y = torch.zeros(batch, len(predictor.findings))  # the weights' findings (core.model.description)

    def step(img, txt):
        out = heads(img, txt, mode, torch.zeros(batch))
        loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(out[h], y) for h in predictor.heads)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def features():  # clone: inference-mode tensors cannot enter autograd
        return (image_features(model, x).clone(),
                text_features(model, predictor.tokenizer, t, max_len=predictor.max_len).clone())

    img, txt = features()
    cached = statistics.median(timed(lambda: step(img, txt), 10))
    recomputed = statistics.median(timed(lambda: step(*features()), 3))
    for p in params:
        p.requires_grad_(False)
    return {"frozen_cached_samples_per_s": batch / cached * 1000,
            "frozen_recomputed_samples_per_s": batch / recomputed * 1000,
            "frozen_cache_speedup": recomputed / cached}


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.data.images import decode_image
    from core.data.reports import DataLayoutError
    from core.evaluation.split_eval import weights_collection
    from core.model.checkpoint import load_weights
    from core.model.description import read_description
    try:
        coll = weights_collection(read_description(Path(args.weights)), Path(args.data), args.dataset)
    except DataLayoutError as exc:
        fail(str(exc))
    studies = [(coll.image_paths[r.image_ids[0]], r.text("report")) for r in coll.reports[: args.studies]]
    t0 = time.perf_counter()
    predictor = load_predictor(args.weights)
    load_s = time.perf_counter() - t0
    grays = [decode_image(p.read_bytes()).gray for p, _ in studies]
    texts = [t for _, t in studies]
    out = {"weights_version": predictor.version, "torch_threads": __import__("torch").get_num_threads(),
           "model_load_s": load_s, "image_size": predictor.size}
    # what the app serves once warm: frozen encoders (the app freezes them in the background)
    t0 = time.perf_counter()
    out["frozen_encoders"] = predictor.freeze_encoders()
    out["freeze_s"] = time.perf_counter() - t0
    # int8 image encoder when the weights carry a calibration that fits them (core.model.int8_image)
    out["image_precision"], out["int8_status"] = predictor.image_precision.value, predictor.int8_state.value

    for _ in range(3):
        predictor.predict(grays[0], texts[0], "report")
    lat = []
    for i in range(args.repeats):
        k = i % len(grays)
        lat += timed(lambda k=k: predictor.predict(grays[k], texts[k], "report"), 1)
    out["predict_p50_ms"], out["predict_p95_ms"] = statistics.median(lat), pct(lat, 95)

    best = (0.0, 1)
    out["batch_throughput"] = {}
    for bs in (1, 4, 8, 16, 32):
        n = max(bs, (len(grays) // bs) * bs)
        t = time.perf_counter()
        for s in range(0, n, bs):
            predictor.predict_batch(grays[s:s + bs], texts[s:s + bs], ["report"] * len(grays[s:s + bs]))
        rate = n / (time.perf_counter() - t)
        out["batch_throughput"][str(bs)] = rate
        best = max(best, (rate, bs))
    out["batch_studies_per_s"], out["best_batch_size"] = best

    model, tokenizer, metadata, _ = load_weights(Path(args.weights))  # a separate plain fp32 copy
    model.eval()
    naive = []
    for i in range(min(args.repeats, len(studies))):
        path, text = studies[i]
        naive += timed(lambda m=model, p=path, t=text: naive_predict(m, tokenizer, metadata, p, t), 1)
    n_naive = len(naive)
    out["baseline_predict_p50_ms"] = statistics.median(naive)
    out["baseline_batch_studies_per_s"] = n_naive / (sum(naive) / 1000)
    del model

    finding = "Cardiomegaly" if "Cardiomegaly" in predictor.findings else predictor.findings[0]
    attr = timed(lambda: predictor.attribute(grays[1], texts[1], "report", finding=finding), 5)
    out["attribution_p50_ms"] = statistics.median(attr)

    out.update(frozen_epoch_speedup(predictor, grays, texts))
    out["training_phase_samples_per_s"] = {k: v for k, v in predictor.metadata.get("timings", {}).items()
                                           if k.endswith("samples_per_s")}
    gflop = model_gflops(args.weights, grays[0], texts[0])
    rate = matmul_gflops()
    out.update(model_gflop=gflop, matmul_gflops=rate, floor_ms=gflop / rate * 1000)
    out["predict_to_floor_ratio"] = out["predict_p50_ms"] / out["floor_ms"]
    out["cold_start_s"], out["peak_rss_mb"] = serving_process(args.weights, studies[0][0], texts[0])
    out["bench_process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["speedup_predict_p50"] = out["baseline_predict_p50_ms"] / out["predict_p50_ms"]
    out["speedup_batch"] = out["batch_studies_per_s"] / out["baseline_batch_studies_per_s"]

    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    rows = [("single study p50 / p95", f"{out['predict_p50_ms']:.1f} / {out['predict_p95_ms']:.1f} ms",
             f"baseline {out['baseline_predict_p50_ms']:.1f} ms ({out['speedup_predict_p50']:.1f}x); "
             f"image encoder {out['image_precision']}"),
            ("batch throughput", f"{out['batch_studies_per_s']:.1f} studies/s (batch {out['best_batch_size']})",
             f"baseline {out['baseline_batch_studies_per_s']:.1f} ({out['speedup_batch']:.1f}x)"),
            ("attribution p50", f"{out['attribution_p50_ms']:.0f} ms", "Grad-CAM + text IG"),
            ("compute floor", f"{out['floor_ms']:.1f} ms", f"{gflop:.2f} GFLOP at {rate:.0f} GFLOP/s; "
             f"p50 = {out['predict_to_floor_ratio']:.2f}x floor"),
            ("frozen epoch speed-up", f"{out['frozen_cache_speedup']:.0f}x", "cached features vs recomputed encoders"),
            ("cold start", f"{out['cold_start_s']:.1f} s", "new process -> first prediction"),
            ("peak RSS serving", f"{out['peak_rss_mb']:.0f} MB", "fresh process: predict, batch of 16, attribution")]
    for name, value, note in rows:
        print(f"{name:24s} {value:36s} {note}")
    return 0


if __name__ == "__main__":
    run_main(main)
