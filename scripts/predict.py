"""Predict the five findings for one chest X-ray (or a CSV batch) from the command line.

    python scripts/predict.py --weights weights --image cxr.png --text "Heart is enlarged." --text-mode report --json
    python scripts/predict.py --weights weights --batch studies.csv --out predictions.csv
    torchrun --nproc_per_node 4 scripts/predict.py --weights weights --batch studies.csv --out predictions.csv

``--batch`` with ``--out`` (and no ``--json``) is sharded and resumable (core.serving.sharded_batch): each
process predicts its share of the rows into ``OUT.parts/``, rank 0 merges them into OUT in
input order; after a kill, the same command (on any number of processes) skips the rows
already done. Files are checked to exist up front; an undecodable image stops the run with
one line (exit 2) and keeps the parts for a rerun once it is fixed.

A batch CSV has a column ``image`` (path, relative to the CSV's folder or absolute) and
optional ``text`` and ``text_mode``. ``--json`` prints one object per study: fusion, image,
text (finding -> probability), thresholds, discordant, out_of_distribution, model.
Bad input (missing file, undecodable image, unknown option) prints one line on stderr and
exits 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import csv  # noqa: E402
import json  # noqa: E402

from scripts._cli import Parser, fail, load_predictor, run_main  # noqa: E402

MAX_TEXT_CHARS = 20_000


def parse_args(argv=None):
    from core.data.labels import TEXT_MODES
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(Path(__file__).resolve().parents[1] / "weights"))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="PNG, JPEG or DICOM file")
    src.add_argument("--batch", help="CSV with columns image[,text,text_mode]")
    p.add_argument("--text", default="")
    p.add_argument("--text-mode", choices=list(TEXT_MODES), default="report")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", help="batch: write a CSV of fused probabilities here")
    return p.parse_args(argv)


def clean_text(text: str) -> str:
    """Drop control characters (NUL and friends) and refuse very long text."""
    from core.data.text_clean import TextError
    from core.data.text_clean import clean_text as clean
    try:
        return clean(text, max_chars=MAX_TEXT_CHARS)
    except TextError as exc:
        fail(str(exc))


def read_image(path: Path):
    from core.data.images import ImageDecodeError, decode_image
    if not path.is_file():
        fail(f"image {path} not found")
    try:
        return decode_image(path.read_bytes(), filename=path.name)
    except ImageDecodeError as exc:
        fail(f"{path.name}: {exc}")


def result_json(pred) -> dict:
    d = pred.to_json()
    out = {k: d[k] for k in ("fusion", "image", "text", "thresholds", "discordant", "discordance",
                             "discordance_score", "out_of_distribution", "ood_score", "ood_reason", "text_mode",
                             "model", "image_reliable")}
    # held-out evidence behind each fused probability (core.evaluation.evidence): auc, ci, positives, reliable
    out["evidence"] = {f: {k: e[k] for k in ("auc", "ci", "positives", "reliable")} for f, e in d["evidence"].items()}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.data.labels import TEXT_MODES

    if args.image:
        img = read_image(Path(args.image))
        text = clean_text(args.text)
        predictor = load_predictor(args.weights)  # after the inputs are checked: bad input is refused at once
        pred = predictor.predict(img.gray, text, args.text_mode, colorfulness=img.colorfulness)
        if args.json:
            print(json.dumps(result_json(pred)))
        else:
            if pred.out_of_distribution:
                print(f"WARNING: this does not look like a frontal chest X-ray ({pred.ood_reason}); "
                      "the probabilities below are not meaningful")
            for f in predictor.findings:  # the weights' own (core.model.description)
                flag = "  DISCORDANT" if f in pred.discordant else ""
                e = pred.evidence[f]
                held = (f"held-out AUC {e['auc']:.2f} [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}], {e['positives']} pos."
                        if e["auc"] is not None else "no held-out evidence")
                weak = "" if pred.image_reliable.get(f) else "  (not reliable from the image)"
                print(f"{f:14s} fused {pred.fusion[f]:.3f} (threshold {pred.thresholds[f]:.3f})  "
                      f"image {pred.image[f]:.3f}  text {pred.text[f]:.3f}  {held}{weak}{flag}")
        return 0
    batch = Path(args.batch)
    if not batch.is_file():
        fail(f"batch file {batch} not found")
    with batch.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "image" not in rows[0]:
        fail(f"{batch.name} needs a header with an 'image' column")
    if args.out and not args.json:
        return predict_sharded(args, batch, rows)
    studies = []
    for row in rows:  # validate everything before predicting anything
        mode = (row.get("text_mode") or args.text_mode).strip()
        if mode not in TEXT_MODES:
            fail(f"{batch.name}: unknown text_mode {mode!r} for {row['image']}")
        path = Path(row["image"])
        studies.append((row["image"], read_image(path if path.is_absolute() else batch.parent / path),
                        clean_text(row.get("text") or ""), mode))
    predictor = load_predictor(args.weights)
    results = []
    for s in range(0, len(studies), 16):
        chunk = studies[s:s + 16]
        results += predictor.predict_batch([c[1].gray for c in chunk], [c[2] for c in chunk], [c[3] for c in chunk],
                                           colorfulness=[c[1].colorfulness for c in chunk])
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", *predictor.findings, "discordant", "out_of_distribution"])
            for (name, *_), p in zip(studies, results, strict=True):
                w.writerow([name, *[f"{p.fusion[f]:.6f}" for f in predictor.findings], ";".join(p.discordant),
                            int(p.out_of_distribution)])
    if args.json or not args.out:
        for (name, *_), p in zip(studies, results, strict=True):
            print(json.dumps(dict(result_json(p), image=name)))
    return 0


def predict_sharded(args, batch: Path, rows: list[dict]) -> int:
    """This process's share of the rows into OUT.parts/, then (rank 0) the merge into OUT."""
    import os

    from core.data.labels import TEXT_MODES
    from core.serving.sharded_batch import (
        PartsError,
        PartWriter,
        batch_fingerprint,
        done_rows,
        merge,
        my_blocks,
        open_parts,
    )
    for i, row in enumerate(rows):  # cheap checks of every row before any work
        mode = (row.get("text_mode") or args.text_mode).strip()
        if mode not in TEXT_MODES:
            fail(f"{batch.name}: unknown text_mode {mode!r} for {row['image']}")
        path = Path(row["image"] or "")
        if not (path if path.is_absolute() else batch.parent / path).is_file():
            fail(f"{batch.name} line {i + 2}: image {row['image']!r} not found")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist
        dist.init_process_group("gloo")  # only for the barrier before the merge
    predictor = load_predictor(args.weights)
    out = Path(args.out)
    try:
        parts = open_parts(out, batch_fingerprint(batch, predictor.version))
    except PartsError as exc:
        fail(str(exc))
    todo = my_blocks(len(rows), set(done_rows(parts)), rank, world)
    if world > 1:
        dist.barrier()  # every rank has read what is done before any rank writes more
    writer = PartWriter(parts, rank)
    for chunk in todo:
        images, texts, modes = [], [], []
        for r in chunk:
            path = Path(rows[r]["image"])
            images.append(read_image(path if path.is_absolute() else batch.parent / path))
            texts.append(clean_text(rows[r].get("text") or ""))
            modes.append((rows[r].get("text_mode") or args.text_mode).strip())
        preds = predictor.predict_batch([im.gray for im in images], texts, modes,
                                        colorfulness=[im.colorfulness for im in images])
        writer.write([(r, [rows[r]["image"], *[f"{p.fusion[f]:.6f}" for f in predictor.findings],
                           ";".join(p.discordant), int(p.out_of_distribution)])
                      for r, p in zip(chunk, preds, strict=True)])
    writer.close()
    if world > 1:
        dist.barrier()
    if rank == 0:
        try:
            n = merge(out, ["image", *predictor.findings, "discordant", "out_of_distribution"], len(rows))
        except PartsError as exc:
            fail(str(exc))
        print(f"wrote {out}: {n} studies ({sum(map(len, todo))} predicted by rank 0 in this run, "
              f"{world} process(es))")
    if world > 1:
        dist.barrier()  # the others exit after the merge
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_main(main)
