"""Training-loader throughput: images/s of JPEG/PNG decode + resize + augment, per worker count.

    python scripts/bench_loader.py --data ../shared/iu-xray --n 256 --workers 0 1 2 --json bench/runs/loader.json
    python scripts/bench_loader.py --data ../shared/iu-xray --upscale 2500 --n 128   # MIMIC-sized JPEGs

Runs the loader the trainer uses (core.data.image_bank.DecodeDataset in a torch DataLoader with
``num_workers`` processes) over ``--n`` images of a dataset (``--dataset``, core.data.sources),
then normalises and augments each batch as the image phase does. ``--upscale PX`` first
writes the images as JPEGs (quality 95) with their long side at PX pixels in a temporary
folder, to stand in for full-size MIMIC-CXR-JPG / CheXpert files. Compare the images/s
with what the GPU consumes (training images/s in the run log): fewer loader images/s than
that means the run is loader-bound and needs more workers.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from scripts._cli import Parser, fail, run_main


def parse_args(argv=None):
    from core.data.sources import DATASETS
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--dataset", default="openi", choices=list(DATASETS))
    p.add_argument("--n", type=int, default=256, help="images per measurement")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--upscale", type=int, default=0, help="re-encode as JPEGs with this long side first")
    p.add_argument("--json", dest="json_out")
    return p.parse_args(argv)


def measure(paths, size: int, workers: int, batch_size: int) -> float:
    import torch

    from core.data.image_bank import DecodeDataset, augment
    from core.data.preprocess import normalise
    loader = torch.utils.data.DataLoader(DecodeDataset(paths, size), batch_size=batch_size, num_workers=workers,
                                         persistent_workers=False)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    n = 0
    for _, pix in loader:
        augment(normalise(pix, 0.5, 0.25), gen)
        n += len(pix)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    args = parse_args(argv)
    from PIL import Image

    from core.data.images import load_png_gray
    from core.data.reports import DataLayoutError
    from core.data.sources import load_collection
    try:
        coll = load_collection(args.dataset, Path(args.data))
    except DataLayoutError as exc:
        fail(str(exc))
    paths = [coll.image_paths[i] for r in coll.reports for i in r.image_ids][: args.n]
    tmp = None
    if args.upscale:
        tmp = tempfile.TemporaryDirectory()
        for k, p in enumerate(paths):
            im = Image.fromarray(load_png_gray(p))
            scale = args.upscale / max(im.size)
            im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC).save(
                Path(tmp.name) / f"{k}.jpg", quality=95)
        paths = [Path(tmp.name) / f"{k}.jpg" for k in range(len(paths))]
    result = {"n_images": len(paths), "size": args.size, "upscale": args.upscale, "cpu_count": os.cpu_count(),
              "images_per_s": {}}
    for w in args.workers:
        measure(paths[: args.batch_size], args.size, w, args.batch_size)  # warm the page cache
        rate = measure(paths, args.size, w, args.batch_size)
        result["images_per_s"][str(w)] = round(rate, 1)
        print(f"workers {w}: {rate:.1f} images/s ({len(paths)} images, {args.size} px"
              f"{f', JPEG long side {args.upscale}' if args.upscale else ''})", flush=True)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    run_main(main)
